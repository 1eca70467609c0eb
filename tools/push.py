"""carl_push: publish a checkpoint to the Hugging Face Hub with a model card of its metrics.

Refuses a checkpoint whose latest eval failed or is missing unless force=true (the refusal
says what would lift it). Needs HF_TOKEN for an upload; local_dir exports the same folder
offline instead. Everything is checked before anything is written or uploaded.
"""

from __future__ import annotations

from pydantic import Field

from carl_engine.hub import GateStatus
from carl_studio.tools.base import Request, Response, ToolContext, ToolSpec


class PushRequest(Request):
    checkpoint: str = Field(
        ..., min_length=1, max_length=4096,
        description="What to push: a job id (its latest checkpoint), a run directory, or a checkpoint folder "
        "(full model or LoRA adapter).",
    )
    repo: str | None = Field(
        None, min_length=1, max_length=193,
        description="Hub repo '<namespace>/<name>' (e.g. 'alice/carl-tiny-arith'); required unless local_dir is given.",
    )
    force: bool = Field(False, description="Push even though the latest eval failed or is missing (the card says so).")
    local_dir: str | None = Field(
        None, min_length=1, max_length=4096,
        description="Export to this new or empty folder instead of uploading (no HF_TOKEN needed).",
    )
    merge: bool = Field(False, description="Merge a LoRA adapter into its base model before pushing (default: push the adapter).")
    private: bool | None = Field(None, description="Create the repo private (ignored when the repo exists).")
    commit_message: str | None = Field(None, min_length=1, max_length=500, description="Commit message on the Hub.")


class PushResponse(Response):
    repo_id: str | None = Field(None, description="The Hub repo pushed to.")
    url: str | None = Field(None, description="The repo's URL (null for an offline export).")
    commit_url: str | None = Field(None, description="The commit created (null for an offline export).")
    local_dir: str | None = Field(None, description="The folder exported to (offline export).")
    checkpoint: str = Field(description="The checkpoint folder pushed.")
    job_id: str | None = Field(None, description="The job the checkpoint belongs to, if known.")
    adapter: bool = Field(description="True when a LoRA adapter was pushed (as an adapter unless merged).")
    merged: bool = Field(description="True when the adapter was merged into its base model first.")
    forced: bool = Field(description="True when force=true overrode a failed or missing eval gate.")
    gate: GateStatus = Field(description="The eval gate the push was checked against, with its reasons.")
    files: list[str] = Field(default_factory=list, description="Files pushed or exported, README.md (the model card) included.")
    next: str = Field(description="What to do next.")


def push_tool(request: PushRequest, ctx: ToolContext) -> PushResponse:
    """Push (or export) a checkpoint after checking its eval gate."""
    from carl_engine.hub import push

    result = push(
        request.checkpoint,
        repo_id=request.repo,
        force=request.force,
        local_dir=request.local_dir,
        merge=request.merge,
        private=request.private,
        commit_message=request.commit_message,
    )
    where = result.url or result.local_dir
    note = " It was pushed without a passing eval; the model card says so." if result.forced else ""
    return PushResponse(**result.model_dump(), next=f"Done: {where}.{note}")


PUSH = ToolSpec(
    name="carl_push",
    title="Push a checkpoint to the Hub",
    description=(
        "Publish a checkpoint (or a job's latest) to the Hugging Face Hub with a generated model card: base model, "
        "method, rewards, steps, eval and CARL metrics, gate verdict. Refuses a checkpoint whose latest carl_eval "
        "failed or is missing unless force=true. LoRA adapters push as adapters (merge=true merges them). "
        "Needs HF_TOKEN; local_dir exports the same folder offline instead."
    ),
    request=PushRequest,
    response=PushResponse,
    fn=push_tool,
    read_only=False,
    destructive=False,
    idempotent=False,
    open_world=True,
)
