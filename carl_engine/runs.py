"""The run directory: the truth about one job, readable by any process.

```
$CARL_HOME/runs/<job-id>/
  spec.json       what was asked (a TrainSpec, or another job kind's spec, with "kind")
  events.jsonl    one JSON object a line: {"time", "kind", "step", ...}
  train.log       the job process's stdout and stderr
  checkpoints/    checkpoint-<step>/ folders written by the trainer
  result.json     the verdict, written once when the job process ends (RunResult)
  eval.json       the latest eval gate verdict, if any
```

Event kinds: `metrics` (`metrics`: name → float), `progress` (`max_steps`), `gate`
(`state`, `carl_weight`), `checkpoint` (`path`), `state` (`state`, `reason`), `stage`
(pipeline stage changes: `stage`, `status`). A reader tolerates a partial last line.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from carl_engine.paths import runs_dir

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class RunResult(BaseModel):
    """`result.json`: what a finished job process says about itself."""

    status: Literal["succeeded", "failed", "cancelled"]
    step: int = Field(0, description="Global step reached.")
    max_steps: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="Final metrics.")
    checkpoint: str | None = Field(None, description="Latest checkpoint folder, if any.")
    error: str | None = Field(None, description="What went wrong, for a failed run (no traceback).")
    extra: dict[str, Any] = Field(default_factory=dict, description="Kind-specific output.")


class RunDir:
    """Paths and readers/writers of one run directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def for_job(cls, job_id: str) -> RunDir:
        return cls(runs_dir() / job_id)

    # paths ---------------------------------------------------------------------------
    @property
    def spec_path(self) -> Path:
        return self.path / "spec.json"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def result_path(self) -> Path:
        return self.path / "result.json"

    @property
    def eval_path(self) -> Path:
        return self.path / "eval.json"

    def create(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # spec and result -------------------------------------------------------------------
    def write_spec(self, spec: dict[str, Any]) -> None:
        _atomic_write(self.spec_path, json.dumps(spec, indent=2, sort_keys=True))

    def read_spec(self) -> dict[str, Any]:
        return json.loads(self.spec_path.read_text())

    def write_result(self, result: RunResult) -> None:
        _atomic_write(self.result_path, result.model_dump_json(indent=2))

    def read_result(self) -> RunResult | None:
        try:
            return RunResult.model_validate_json(self.result_path.read_text())
        except FileNotFoundError:
            return None

    # events ----------------------------------------------------------------------------
    def append_event(self, kind: str, *, step: int | None = None, **fields: Any) -> None:
        """Append one event line. One `write` of a whole line, so concurrent appenders interleave whole lines."""
        record = {"time": time.time(), "kind": kind, "step": step, **fields}
        line = json.dumps(record, default=_jsonable, allow_nan=True) + "\n"
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.events_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def read_events(self, cursor: int = 0, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """Events from byte offset `cursor`; returns them and the cursor after the last whole line read."""
        try:
            with open(self.events_path, "rb") as fh:
                fh.seek(cursor)
                data = fh.read()
        except FileNotFoundError:
            return [], cursor
        events: list[dict[str, Any]] = []
        offset = cursor
        for raw in data.splitlines(keepends=True):
            if not raw.endswith(b"\n"):
                break  # a line still being written
            if limit is not None and len(events) >= limit:
                break
            offset += len(raw)
            if raw.strip():
                events.append(json.loads(raw))
        return events, offset

    def iter_events(self, kind: str | None = None) -> list[dict[str, Any]]:
        events, _ = self.read_events()
        return [e for e in events if kind is None or e.get("kind") == kind]

    # checkpoints -----------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Complete checkpoints (those with trainer_state.json), oldest step first."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for child in self.checkpoints_dir.iterdir():
            match = _CHECKPOINT.match(child.name)
            if match and (child / "trainer_state.json").exists():
                found.append((int(match.group(1)), child))
        return [path for _, path in sorted(found)]

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)
