"""`carl push <job-id|checkpoint> --repo user/name [--force] [--local-dir D] [--merge]`.

Calls the carl_push tool. Exit status 0 when pushed (or exported), 2 when refused or on bad
input (the message says what would lift the refusal: run `carl eval` again or pass --force).
"""

from __future__ import annotations

from typing import Annotated

import typer

from carl_studio.cli.app import run_tool
from carl_studio.cli.render import out, print_json
from carl_studio.tools.push import PushResponse

GATE_STYLE = {"passed": "bold green", "failed": "bold red", "missing": "yellow"}


def render(answer: PushResponse) -> None:
    where = answer.url or answer.local_dir
    kind = "adapter" if answer.adapter and not answer.merged else ("merged model" if answer.merged else "model")
    out.print(f"[bold]{'pushed' if answer.url else 'exported'}[/] {kind} {answer.checkpoint} -> {where}")
    if answer.commit_url:
        out.print(f"commit: {answer.commit_url}")
    forced = " (forced)" if answer.forced else ""
    out.print(f"eval gate: [{GATE_STYLE[answer.gate.state]}]{answer.gate.state}[/]{forced}")
    for reason in answer.gate.reasons:
        out.print(f"  {reason}")
    out.print(f"files: {', '.join(answer.files)}")


def push(
    checkpoint: Annotated[str, typer.Argument(help="Job id (its latest checkpoint), run directory, or checkpoint folder.")],
    repo: Annotated[str | None, typer.Option(help="Hub repo <namespace>/<name>; needs HF_TOKEN.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Push although the latest eval failed or is missing.")] = False,
    local_dir: Annotated[str | None, typer.Option("--local-dir", help="Export to this new folder instead (offline).")] = None,
    merge: Annotated[bool, typer.Option("--merge", help="Merge a LoRA adapter into its base model first.")] = False,
    private: Annotated[bool | None, typer.Option("--private/--public", help="Visibility of a new repo.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
) -> None:
    """Push a checkpoint to the Hugging Face Hub with a model card (refused unless its eval passed)."""
    answer = run_tool("carl_push", {"checkpoint": checkpoint, "repo": repo, "force": force, "local_dir": local_dir,
                                    "merge": merge, "private": private})
    if json_output:
        print_json(answer)
    else:
        render(answer)


def register(app: typer.Typer) -> None:
    app.command("push")(push)
