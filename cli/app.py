"""`carl`: the command line over carl_studio.tools (the same tools the MCP server serves).

    carl train [--model ... --method ... --compute ...]   start (and by default follow) a job
    carl status [JOB_ID]   carl logs JOB_ID [--follow]   carl stop JOB_ID
    carl compute   carl bundle SPEC   carl mcp [--transport stdio|sse|http]

Commands live one module per area (carl_studio.cli.train, .jobs, .compute); each has a
`register(app)` and is listed once in COMMAND_MODULES. Errors print one line, never a
traceback (set CARL_DEBUG=1 to see it): exit 2 for bad input, 1 for a failed job or an
internal error, 130 when interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from carl_studio.cli.render import err

app = typer.Typer(
    name="carl",
    help="CARL Studio: train language models with coherence-aware rewards, locally or on rented GPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: one module per command area; each defines `register(app)`
COMMAND_MODULES = ["carl_studio.cli.train", "carl_studio.cli.jobs", "carl_studio.cli.compute",
                   "carl_studio.cli.observe", "carl_studio.cli.push", "carl_studio.cli.eval", "carl_studio.cli.bench"]

T = TypeVar("T")


def guarded(action: Callable[[], T]) -> T:
    """Run `action`; turn an error into one line on stderr and an exit status.

    Raises:
        typer.Exit: 2 for an engine error (bad input, unknown job, missing credential…),
            1 for anything unexpected, 130 for Ctrl-C.
    """
    from carl_engine.errors import CarlError

    try:
        return action()
    except CarlError as error:
        if os.environ.get("CARL_DEBUG"):
            raise
        err.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as error:  # one line for people; the traceback with CARL_DEBUG=1
        if os.environ.get("CARL_DEBUG"):
            raise
        err.print(f"[bold red]internal error[/] ({type(error).__name__}): {error}. "
                  "Run again with CARL_DEBUG=1 for the traceback.", markup=True, highlight=False)
        raise typer.Exit(1) from None


def run_tool(name: str, arguments: dict[str, Any], ctx: Any = None) -> Any:
    """Call the tool `name` with `arguments` (None values left out), as the MCP server would."""
    from carl_studio.tools.base import ToolContext
    from carl_studio.tools.registry import get_tool

    given = {key: value for key, value in arguments.items() if value is not None}
    return guarded(lambda: get_tool(name).call(given, ctx if ctx is not None else ToolContext()))


@app.command("mcp", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def mcp_command(context: typer.Context) -> None:
    """Run the MCP server (same as carl-mcp): stdio by default; --transport sse|http --host --port."""
    from carl_studio.server.main import main as server_main

    raise typer.Exit(server_main(list(context.args)))


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main(argv: list[str] | None = None) -> None:
    """The `carl` entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="carl")
