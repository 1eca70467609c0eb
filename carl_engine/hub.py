"""Push a checkpoint to the Hugging Face Hub (or export it offline) with a generated model card.

`push(ref, repo_id=...)`:
1. checks everything before anything is written: the repo id, the checkpoint (a folder, a
   run directory or a job id: its latest checkpoint, resolved as carl_eval resolves it), the
   eval gate, the credential (`HF_TOKEN`) and the export folder;
2. refuses a checkpoint whose latest eval failed, or that has no eval of its own, unless
   `force` (GateRefusedError says what would lift it);
3. stages the model files (no optimizer, scheduler or RNG state) plus a README.md model card
   built from the run directory's spec.json, events.jsonl, result.json and eval.json;
   a LoRA adapter is pushed as an adapter, or merged into its base model with `merge`;
4. uploads with `HfApi.create_repo` + `HfApi.upload_folder`, or, with `local_dir`, moves the
   staged folder into place (atomically: a failure leaves nothing half-written).

The token never appears in a result or an error: error texts are scrubbed of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from carl_engine.errors import GateRefusedError, InvalidSpecError, MissingCredentialsError, ServiceError
from carl_engine.runs import RunDir

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID_PATTERN = rf"^{_NAME}/{_NAME}$"
#: Files of a trainer checkpoint that are training state, not the model.
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin", "trainer_state.json", "rng_state*",
                  "carl_gate.json")


class GateStatus(BaseModel):
    """The eval gate as seen by carl_push."""

    state: Literal["passed", "failed", "missing"] = Field(..., description="passed, failed, or missing (no eval of this checkpoint).")
    reasons: list[str] = Field(default_factory=list, description="The eval's reasons, or why it counts as missing.")
    eval_path: str | None = Field(None, description="The eval.json read, if any.")
    metrics: dict[str, float] = Field(default_factory=dict, description="The eval's metrics, flat.")


class PushResult(BaseModel):
    """What carl_push did."""

    repo_id: str | None = Field(None, description="The Hub repo pushed to (None for an offline export without one).")
    url: str | None = Field(None, description="The repo's URL on the Hub (None offline).")
    commit_url: str | None = Field(None, description="The commit created (None offline).")
    local_dir: str | None = Field(None, description="The folder exported to (offline export).")
    checkpoint: str = Field(..., description="The checkpoint folder pushed.")
    job_id: str | None = Field(None, description="The job the checkpoint belongs to, if known.")
    adapter: bool = Field(..., description="True when a LoRA adapter was pushed as an adapter.")
    merged: bool = Field(False, description="True when a LoRA adapter was merged into its base model first.")
    forced: bool = Field(False, description="True when force=true overrode a failed or missing eval gate.")
    gate: GateStatus = Field(..., description="The eval gate the push was checked against.")
    files: list[str] = Field(default_factory=list, description="Files pushed or exported (relative paths).")


def validate_repo_id(repo_id: str, *, field: str = "repo") -> str:
    """`namespace/name`, each 1-96 of letters, digits, `-`, `_`, `.`; no `--` or `..`.

    Raises:
        InvalidSpecError: names `field`, the rule and an accepted example.
    """
    repo_id = (repo_id or "").strip()
    bad = not re.fullmatch(REPO_ID_PATTERN, repo_id) or "--" in repo_id or ".." in repo_id
    if bad or repo_id.endswith(".git"):
        raise InvalidSpecError(
            field, "must be <namespace>/<name> (letters, digits, '-', '_', '.'; e.g. 'alice/carl-tiny-arith')",
            got=repo_id,
        )
    return repo_id


def gate_status(checkpoint: Path) -> GateStatus:
    """The latest eval of `checkpoint`: its run directory's eval.json (else the folder's own).

    An eval.json of another checkpoint of the same run counts as missing for this one.
    """
    from carl_engine.evaluation.evaluate import report_folder
    from carl_engine.evaluation.spec import read_report

    folders = [f for f in (report_folder(checkpoint), checkpoint) if f is not None]
    reports = [(f / "eval.json", read_report(f)) for f in dict.fromkeys(folders)]
    found = [(path, r) for path, r in reports if r is not None]
    if not found:
        return GateStatus(state="missing", reasons=["no eval.json: this checkpoint was never evaluated"])
    path, report = max(found, key=lambda pair: pair[1].time)
    if Path(report.checkpoint).resolve() != checkpoint.resolve():
        return GateStatus(
            state="missing",
            reasons=[f"the latest eval is of {report.checkpoint}, not of this checkpoint"],
            eval_path=str(path),
        )
    return GateStatus(
        state="passed" if report.passed else "failed",
        reasons=list(report.reasons),
        eval_path=str(path),
        metrics=report.metrics.flat(),
    )


def _refusal(gate: GateStatus, ref: str) -> GateRefusedError:
    what = "failed" if gate.state == "failed" else "is missing"
    again = " again" if gate.state == "failed" else ""
    return GateRefusedError(
        f"carl_push refused: the latest eval of {ref} {what} ({'; '.join(gate.reasons)})",
        hint=f"run carl_eval on {ref}{again} (carl eval {ref}) or pass force=true",
        gate=gate.state,
    )


def _run_facts(run_dir: Path | None) -> dict[str, Any]:
    """spec, result and the last logged metrics of the run that produced the checkpoint."""
    if run_dir is None:
        return {"spec": {}, "result": None, "metrics": {}}
    run = RunDir(run_dir)
    try:
        spec = run.read_spec()
    except (FileNotFoundError, json.JSONDecodeError):
        spec = {}
    metrics: dict[str, float] = {}
    for event in run.iter_events("metrics"):
        metrics.update({k: v for k, v in (event.get("metrics") or {}).items() if isinstance(v, (int, float))})
    return {"spec": spec, "result": run.read_result(), "metrics": metrics}


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def model_card(*, repo_id: str | None, checkpoint: Path, job_id: str | None, run_dir: Path | None,
               gate: GateStatus, adapter: bool, merged: bool, forced: bool) -> str:
    """The README.md of the pushed model: YAML metadata, then what it is, how it was trained,
    its eval and CARL metrics, and the gate verdict."""
    facts = _run_facts(run_dir)
    spec, result, metrics = facts["spec"], facts["result"], facts["metrics"]
    base = str(spec.get("model") or _adapter_base(checkpoint) or "unknown")
    method = str(spec.get("method") or "unknown")
    rewards = spec.get("rewards") or {}
    steps = result.step if result is not None else None
    tags = ["carl", "carl-studio", "trl", method] + (["lora", "peft"] if adapter else [])
    meta = ["---", "library_name: " + ("peft" if adapter else "transformers"), "pipeline_tag: text-generation"]
    if re.fullmatch(REPO_ID_PATTERN, base):
        meta.append(f"base_model: {base}")
    meta += ["tags:"] + [f"- {t}" for t in tags] + ["---", ""]
    title = repo_id or checkpoint.name
    lines = [f"# {title}", "", f"Fine-tuned from `{base}` with CARL Studio ({method}"
             + (", LoRA adapter" if adapter and not merged else ", LoRA merged into the base" if merged else "") + ").", ""]
    lines += ["## Training", "", "| | |", "|---|---|", f"| base model | `{base}` |", f"| method | {method} |"]
    if rewards:
        shown = ", ".join(f"{k} × {_fmt(v)}" for k, v in rewards.items()) if isinstance(rewards, dict) else str(rewards)
        lines.append(f"| rewards | {shown} |")
    for key in ("task", "dataset", "carl", "cascade", "max_steps", "learning_rate", "seed"):
        if spec.get(key) not in (None, "", {}):
            value = spec[key]
            if isinstance(value, dict):
                value = {k: v for k, v in value.items() if v is not None}
            lines.append(f"| {key} | {json.dumps(value) if isinstance(value, (dict, list)) else _fmt(value)} |")
    lines.append(f"| steps trained | {steps if steps is not None else 'unknown'} |")
    lines.append(f"| job | {job_id or 'n/a'} (checkpoint `{checkpoint.name}`) |")
    verdict = {"passed": "PASSED", "failed": "FAILED", "missing": "NOT EVALUATED"}[gate.state]
    lines += ["", "## Eval gate", "", f"**{verdict}**" + (" — pushed with force=true" if forced else ""), ""]
    lines += [f"- {reason}" for reason in gate.reasons]
    if gate.metrics:
        lines += ["", "## Eval metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(gate.metrics.items())]
    carl = {k: v for k, v in metrics.items() if k.startswith(("carl/", "rewards/")) or k in ("reward", "entropy", "loss")}
    if carl:
        lines += ["", "## CARL and training metrics (last logged)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(float(v))} |" for k, v in sorted(carl.items())]
    lines += ["", "## Use", "", "```python"]
    ident = repo_id or "<this folder>"
    if adapter and not merged:
        lines += ["from peft import AutoPeftModelForCausalLM", f'model = AutoPeftModelForCausalLM.from_pretrained("{ident}")']
    else:
        lines += ["from transformers import AutoModelForCausalLM", f'model = AutoModelForCausalLM.from_pretrained("{ident}")']
    lines += ["```", ""]
    return "\n".join(meta + lines)


def _adapter_base(checkpoint: Path) -> str | None:
    try:
        return json.loads((checkpoint / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _stage(checkpoint: Path, dest: Path, *, merge: bool) -> None:
    """Copy the model files of `checkpoint` into `dest` (merging a LoRA adapter if asked)."""
    ignore = shutil.ignore_patterns(*TRAINING_STATE, "global_step*", ".*")
    shutil.copytree(checkpoint, dest, ignore=ignore, dirs_exist_ok=True)
    if merge:
        for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
            (dest / name).unlink(missing_ok=True)
        _merge_adapter(checkpoint, dest)  # last: the merged config and weights win


def _merge_adapter(checkpoint: Path, dest: Path) -> None:
    """Load the adapter's base model, merge the adapter in, save the full model to `dest`."""
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(str(checkpoint))
    merged = model.merge_and_unload()
    merged.save_pretrained(str(dest), safe_serialization=True)


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _upload(folder: Path, repo_id: str, *, token: str, endpoint: str | None, private: bool | None,
            message: str) -> tuple[str, str]:
    """create_repo + upload_folder; returns (repo url, commit url)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(endpoint=endpoint, token=token)
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder), commit_message=message)
    except OfflineModeIsEnabled:
        raise ServiceError("HF_HUB_OFFLINE is set: the Hub cannot be reached", hint="unset HF_HUB_OFFLINE, or export with local_dir") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        hint = "check that HF_TOKEN has write access to this namespace" if status in (401, 403) else None
        raise ServiceError(f"the Hub refused the push to {repo_id} ({status}): {_scrub(str(exc), token)}", hint=hint) from None
    except OSError as exc:  # connection errors (httpx's are OSError subclasses or wrap them)
        raise ServiceError(f"the Hub could not be reached: {_scrub(str(exc), token)}") from None
    return str(url), str(commit.commit_url)


def push(ref: str, *, repo_id: str | None = None, force: bool = False, local_dir: str | os.PathLike[str] | None = None,
         merge: bool = False, private: bool | None = None, token: str | None = None, endpoint: str | None = None,
         commit_message: str | None = None) -> PushResult:
    """Push a checkpoint (a folder, a run directory or a job id: its latest) to the Hub, or export it.

    Args:
        ref: the checkpoint folder, run directory, or job id.
        repo_id: `namespace/name` on the Hub; required unless `local_dir` is given.
        force: push even when the latest eval failed or is missing.
        local_dir: export here instead of uploading (a new or empty folder); no token needed.
        merge: merge a LoRA adapter into its base model first (needs the base model locally).
        private: create the repo private (ignored when it exists).
        token: Hub token; default `$HF_TOKEN`.
        endpoint: Hub URL; default `$HF_ENDPOINT`, else huggingface.co.
        commit_message: default "Upload <checkpoint> with CARL Studio".
    Returns:
        PushResult.
    Raises:
        InvalidSpecError: malformed repo id, missing checkpoint, merge of a non-adapter, a non-empty local_dir.
        JobNotFoundError: an unknown job id.
        GateRefusedError: the latest eval failed or is missing and force is false.
        MissingCredentialsError: no HF_TOKEN for an upload.
        ServiceError: the Hub refused or could not be reached.
    """
    from carl_engine.evaluation.evaluate import resolve_checkpoint

    if repo_id is not None or local_dir is None:
        repo_id = validate_repo_id(repo_id or "")
    ckpt = resolve_checkpoint(ref, field="checkpoint")
    adapter = ckpt.is_adapter
    if merge and not adapter:
        raise InvalidSpecError("merge", "only a LoRA adapter checkpoint (adapter_config.json) can be merged", got=str(ckpt.path))
    gate = gate_status(ckpt.path)
    if gate.state != "passed" and not force:
        raise _refusal(gate, ckpt.job_id or str(ckpt.path))
    out = Path(local_dir).expanduser() if local_dir is not None else None
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidSpecError("local_dir", "must be a new or empty folder", got=str(out))
    token = token or os.environ.get("HF_TOKEN") or None
    if out is None and not token:
        raise MissingCredentialsError("HF_TOKEN", "carl_push to the Hugging Face Hub (or export offline with local_dir)")

    parent = out.parent if out is not None else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".carl-push-", dir=parent) as tmp:
        stage = Path(tmp) / "model"
        stage.mkdir()
        _stage(ckpt.path, stage, merge=merge)
        card = model_card(repo_id=repo_id, checkpoint=ckpt.path, job_id=ckpt.job_id, run_dir=ckpt.run_dir,
                          gate=gate, adapter=adapter and not merge, merged=merge, forced=gate.state != "passed")
        (stage / "README.md").write_text(card)
        files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
        result = PushResult(repo_id=repo_id, checkpoint=str(ckpt.path), job_id=ckpt.job_id, adapter=adapter,
                            merged=merge, forced=gate.state != "passed", gate=gate, files=files)
        if out is not None:
            if out.exists():
                out.rmdir()
            os.replace(stage, out)
            return result.model_copy(update={"local_dir": str(out.resolve())})
        message = commit_message or f"Upload {ckpt.job_id + '/' if ckpt.job_id else ''}{ckpt.path.name} with CARL Studio"
        url, commit_url = _upload(stage, repo_id, token=token, endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None,
                                  private=private, message=message)
        return result.model_copy(update={"url": url, "commit_url": commit_url})
