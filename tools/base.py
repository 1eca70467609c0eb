"""What every tool is made of: a request model, a response model, one function, honest hints.

A tool is described once, by a `ToolSpec`, and both front ends read that description: the
MCP server (`carl_studio.server`) registers each spec as an MCP tool whose input schema is
the request model's fields and whose output schema is the response model; the `carl` CLI
calls the same function and renders the same response model. So the two can never disagree.

Nothing here imports `mcp`; the server turns the plain booleans of a spec into MCP tool
annotations. Nothing here imports torch either: the engine modules a tool needs are
imported inside its function.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


if TYPE_CHECKING:
    from carl_engine.jobs.manager import JobManager

#: Job ids are short tokens chosen by the job store; this bounds what a caller may send.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

JobId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=JOB_ID_PATTERN,
        description="The job's id, as returned by carl_train (e.g. '7Q2XK4'). carl_status lists the known jobs.",
    ),
]


class Request(BaseModel):
    """Base of every tool request: unknown fields are an error, never silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Response(BaseModel):
    """Base of every tool response."""

    model_config = ConfigDict(extra="forbid")


class ToolContext:
    """What a tool function may use: the job manager, opened on first use.

    The MCP server makes one per process in its lifespan; the CLI makes one per command.
    `carl_compute` never touches the job store, so the store is opened lazily.
    """

    def __init__(self, jobs: JobManager | None = None) -> None:
        self._jobs = jobs

    @property
    def jobs(self) -> JobManager:
        if self._jobs is None:
            from carl_engine.jobs.manager import JobManager

            self._jobs = JobManager()
        return self._jobs


ToolFn = Callable[[Any, ToolContext], BaseModel]


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its contract (request, response), its function and its hints.

    Hints follow MCP's tool annotations: `read_only` (changes nothing), `destructive`
    (may end or delete something), `idempotent` (calling twice = calling once),
    `open_world` (may talk to systems outside this machine, e.g. remote compute).
    """

    name: str
    title: str
    description: str
    request: type[Request]
    response: type[Response]
    fn: ToolFn
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    open_world: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"carl_[a-z_]+", self.name):
            raise ValueError(f"tool names are carl_<lowercase>; got {self.name!r}")
        if self.read_only and self.destructive:
            raise ValueError(f"{self.name}: a read-only tool cannot be destructive")

    def call(self, arguments: dict[str, Any], ctx: ToolContext) -> Response:
        """Validate raw `arguments` into the request model and run the tool.

        Raises:
            InvalidSpecError: an argument breaks a rule of the request model (names the field).
            CarlError: whatever the engine raises for a valid request it cannot serve.
        """
        from carl_engine.training.spec import spec_error

        try:
            request = self.request.model_validate(arguments)
        except ValidationError as err:
            raise spec_error(err, self.request) from None
        return self.fn(request, ctx)
