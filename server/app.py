"""The MCP server: `build_server()` registers every tool of carl_studio.tools.registry.TOOLS.

Each `ToolSpec` becomes one MCP tool whose arguments are the request model's fields, flat
(`{"job_id": "7Q2"}`, not `{"request": {...}}`: easier for agents to fill), whose output
schema is the response model, and whose annotations are the spec's honest hints.

Errors, in two kinds:
- anticipated: a bad argument or an engine error (carl_engine.errors.CarlError) becomes a
  `ToolError` whose text names the field, the rule and what would lift it;
- unexpected: anything else is logged with its traceback (stderr and the server log file)
  and the client gets a generic `ToolError` saying what to do — never the traceback.

Start-up imports no torch/transformers/trl: tool functions import the heavy engine modules
inside their bodies, and the lifespan opens only the SQLite job store.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, WithJsonSchema
from starlette.requests import Request
from starlette.responses import JSONResponse

from carl_engine.errors import CarlError
from carl_studio.tools.base import ToolContext, ToolSpec
from carl_studio.tools.registry import TOOLS

if TYPE_CHECKING:
    from carl_engine.jobs.manager import JobManager

logger = logging.getLogger("carl_studio.server")

SERVER_NAME = "carl-studio"
INSTRUCTIONS = (
    "CARL Studio trains language models with coherence-aware (CARL) rewards. Start with carl_compute "
    "(what fits where), start work with carl_train (returns a job_id at once), follow it with carl_status "
    "(poll_after_s says when to ask again) and carl_logs, end it with carl_stop. carl_observe shows how a run "
    "is learning (phases, stop rules, a plot); carl_eval gates a checkpoint (pass/fail with reasons); carl_push "
    "publishes only a checkpoint whose eval passed; carl_bench measures whether CARL helps (seed-matched A/B). "
    "Long work never blocks a call: tools that start work return a job_id. Credentials (HF_TOKEN, "
    "RUNPOD_API_KEY) are read from the server's environment, never passed as arguments."
)


@dataclass
class ServerState:
    """The lifespan's context: what every tool call of this server process shares."""

    tools: ToolContext
    log_file: str | None = None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("carl-studio")
    except PackageNotFoundError:
        return "0+unknown"


def build_server(
    *, tools: list[ToolSpec] | None = None, log_file: str | None = None, jobs: JobManager | None = None
) -> MCPServer[ServerState]:
    """The CARL Studio MCP server with every tool registered.

    Args:
        tools: the tools to register (default: carl_studio.tools.registry.TOOLS).
        log_file: where unexpected errors' tracebacks go, named in the generic error message.
        jobs: the job manager the tools use (default: one over the store at $CARL_HOME/jobs.db,
            opened by the lifespan).

    Returns:
        An `MCPServer` to run over stdio, SSE or streamable HTTP (see carl_studio.server.main).
    """

    @asynccontextmanager
    async def lifespan(_: MCPServer[ServerState]) -> AsyncIterator[ServerState]:
        from carl_engine.jobs.manager import JobManager

        state = ServerState(tools=ToolContext(jobs if jobs is not None else JobManager()), log_file=log_file)
        async with anyio.create_task_group() as group:
            group.start_soon(_reconcile, state.tools)
            try:
                yield state
            finally:
                group.cancel_scope.cancel()

    server: MCPServer[ServerState] = MCPServer(
        SERVER_NAME, instructions=INSTRUCTIONS, version=_version(), lifespan=lifespan
    )
    for spec in tools if tools is not None else TOOLS:
        server.add_tool(
            mcp_tool_function(spec),
            name=spec.name,
            title=spec.title,
            description=spec.description,
            annotations=ToolAnnotations(
                title=spec.title,
                read_only_hint=spec.read_only,
                destructive_hint=spec.destructive,
                idempotent_hint=spec.idempotent,
                open_world_hint=spec.open_world,
            ),
            structured_output=True,
        )

    @server.custom_route("/health", methods=["GET"])
    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "server": SERVER_NAME, "version": _version()})

    return server


async def _reconcile(tools: ToolContext) -> None:
    """Bring unfinished jobs up to date with their backends, off the start-up path."""
    try:
        reconciled = await anyio.to_thread.run_sync(tools.jobs.reconcile, abandon_on_cancel=True)
        logger.info("reconciled %d unfinished job(s) with their backends", len(reconciled))
    except Exception:
        logger.exception("reconciling unfinished jobs failed; carl_status still refreshes each job it is asked about")


def mcp_tool_function(spec: ToolSpec) -> Callable[..., Any]:
    """An async function whose signature is the flat fields of `spec.request`, for `add_tool`.

    The SDK derives the input schema from the signature: each parameter carries its field's
    schema (description, bounds, enums) but accepts any value, so that validation happens once,
    in the request model (`ToolSpec.call`: cross-field rules, `extra="forbid"`), whose errors
    read like the engine's. The tool runs in a worker thread; errors map as the module says.
    """
    fields = spec.request.model_fields

    async def run(ctx: Context, **arguments: Any) -> Any:
        state: ServerState = ctx.request_context.lifespan_context
        # The SDK's argument model drops names it does not know; keep them, so that the request
        # model (extra="forbid") names a misspelt argument instead of ignoring it.
        request_args = {name: arguments.get(name, value) for name, value in _given_arguments(ctx).items()}
        try:
            return with_inline_images(await anyio.to_thread.run_sync(spec.call, request_args, state.tools))
        except CarlError as err:
            raise ToolError(str(err)) from None
        except Exception as err:
            logger.exception("%s failed unexpectedly", spec.name)
            where = f" (traceback in {state.log_file})" if state.log_file else " (traceback in the server's log)"
            raise ToolError(
                f"{spec.name} hit an internal error ({type(err).__name__}){where}. Check carl_status before retrying; "
                "if it happens again with the same arguments, report it."
            ) from None

    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
    annotations: dict[str, Any] = {"ctx": Context}
    schemas = property_schemas(spec.request)
    for name, field in fields.items():
        # The schema agents read is the request model's own; validation is left to the request
        # model (ToolSpec.call), whose errors name the field and rule in the engine's words.
        annotation = Annotated[Any, WithJsonSchema(schemas[name])]
        default = inspect.Parameter.empty if field.is_required() else field.get_default(call_default_factory=True)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
        annotations[name] = annotation
    run.__signature__ = inspect.Signature(params, return_annotation=spec.response)  # type: ignore[attr-defined]
    run.__annotations__ = {**annotations, "return": spec.response}
    run.__name__ = run.__qualname__ = spec.name
    run.__doc__ = spec.description
    return run


def with_inline_images(result: Any) -> Any:
    """A response whose `inline_images()` returns (mime, bytes) pairs (carl_observe's plot) as a
    CallToolResult: the structured response plus those images as MCP image content."""
    images = getattr(result, "inline_images", None)
    found = images() if callable(images) else []
    if not found:
        return result
    import base64

    from mcp.types import CallToolResult, ImageContent, TextContent

    content: list[Any] = [TextContent(type="text", text=result.model_dump_json(indent=2))]
    content += [ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime) for mime, data in found]
    return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))


def _given_arguments(ctx: Context) -> dict[str, Any]:
    """The arguments exactly as the client sent them."""
    params = ctx.request_context.params or {}
    arguments = params.get("arguments") if isinstance(params, dict) else getattr(params, "arguments", None)
    return dict(arguments) if isinstance(arguments, dict) else {}


def property_schemas(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each field's JSON schema in `model`, with `$ref`s to `$defs` inlined (the tool schema is flat)."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    return {name: _inline(prop, defs) for name, prop in schema["properties"].items()}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {**target, **{key: _inline(value, defs) for key, value in node.items() if key != "$ref"}}
    return {key: _inline(value, defs) for key, value in node.items()}
