"""Read a run's logged metrics from wherever they live, into one `MetricLog`.

Sources (see `resolve`):
- a job id, or a run directory: `events.jsonl` (`metrics` events, read with `RunDir`); when
  it holds no metrics, the latest checkpoint's `trainer_state.json`;
- a `trainer_state.json` (its `log_history`, as the HF Trainer writes it);
- a JSONL metrics file: one object a line with `step` and metrics named as TRL logs them;
- a local trackio project: `trackio:<project>` or `trackio:<project>:<run>`, or a path to
  the project's `.db` file. Trackio keeps one SQLite file per project in `$TRACKIO_DIR`
  (default `$HF_HOME/trackio`, i.e. `~/.cache/huggingface/trackio`), named after the project
  with characters other than letters, digits, `-` and `_` dropped; its table `metrics` has
  `run_name`, `step` and `metrics` (a JSON object, text or bytes; NaN and ±inf stored as the
  strings "NaN", "Infinity", "-Infinity"). Older trackio versions add a `project_name` column.
  This reader relies on that table only, read-only; other trackio storage (parquet mirrors,
  remote Spaces) is not read.

Non-finite values are kept (as float NaN/inf): the non-finite stop rule needs them.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carl_engine.errors import InvalidSpecError, JobNotFoundError
from carl_engine.paths import carl_home, runs_dir
from carl_engine.runs import RunDir

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_NON_FINITE_STRINGS = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf, "inf": math.inf, "-inf": -math.inf}
_SKIP_KEYS = {"step", "epoch", "time", "timestamp", "kind", "total_flos", "train_runtime"}


@dataclass
class MetricLog:
    """Metrics by name, each a list of (step, value) sorted by step."""

    source: str
    source_kind: str
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    job_id: str | None = None
    run_dir: Path | None = None
    default_plot_path: Path | None = None

    def add(self, step: int, name: str, value: float) -> None:
        self.series.setdefault(name, []).append((step, value))

    def finish(self) -> MetricLog:
        for name in self.series:
            self.series[name].sort(key=lambda pair: pair[0])
        return self

    @property
    def steps(self) -> list[int]:
        return sorted({step for points in self.series.values() for step, _ in points})


def _as_float(value: Any) -> float | None:
    """A metric value as float; None for what is not a number (strings, lists, bools)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return _NON_FINITE_STRINGS.get(value.strip().lower())
    return None


def _add_record(log: MetricLog, step: Any, record: dict[str, Any], *, prefix: str = "") -> None:
    if not isinstance(step, (int, float)) or isinstance(step, bool):
        return
    for key, value in record.items():
        number = _as_float(value)
        if number is not None and key not in _SKIP_KEYS:
            log.add(int(step), prefix + key, number)


def read_run_dir(path: Path, *, job_id: str | None = None) -> MetricLog:
    """Metrics of a run directory: `metrics` events, else the latest trainer_state.json."""
    run = RunDir(path)
    log = MetricLog(str(path), "run_dir", job_id=job_id, run_dir=path, default_plot_path=path / "observe.png")
    for event in run.iter_events("metrics"):
        metrics = event.get("metrics")
        if isinstance(metrics, dict):
            _add_record(log, event.get("step"), metrics)
    for event in run.iter_events("gate"):
        weight = _as_float(event.get("carl_weight"))
        if weight is not None and isinstance(event.get("step"), int):
            log.add(event["step"], "gate/carl_weight", weight)
    if not any(not name.startswith("gate/") for name in log.series):
        latest = run.latest_checkpoint()
        if latest is not None:
            _read_log_history(latest / "trainer_state.json", log)
    return log.finish()


def _read_log_history(path: Path, log: MetricLog) -> None:
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidSpecError("source", f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise InvalidSpecError("source", f"{path} has no log_history list (is it a trainer_state.json?)")
    for record in history:
        if isinstance(record, dict):
            _add_record(log, record.get("step"), record)


def read_trainer_state(path: Path) -> MetricLog:
    """Metrics of a `trainer_state.json` (its `log_history`)."""
    log = MetricLog(str(path), "trainer_state", default_plot_path=path.parent / "observe.png")
    _read_log_history(path, log)
    return log.finish()


def read_jsonl(path: Path) -> MetricLog:
    """Metrics of a JSONL file: one object a line with `step` (a partial last line is skipped)."""
    log = MetricLog(str(path), "jsonl", default_plot_path=path.with_name(f"{path.stem}.observe.png"))
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # a line still being written
            raise InvalidSpecError("source", f"{path} line {number} is not a JSON object") from None
        if isinstance(record, dict):
            metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else record
            _add_record(log, record.get("step"), metrics)
    return log.finish()


def trackio_dir() -> Path:
    """Where trackio keeps its project databases: $TRACKIO_DIR, else $HF_HOME/trackio."""
    if os.environ.get("TRACKIO_DIR"):
        return Path(os.environ["TRACKIO_DIR"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(hf_home).expanduser() / "trackio"


def trackio_db_path(project: str) -> Path:
    """The database file trackio uses for `project` (same name rule as trackio)."""
    safe = "".join(c for c in project if c.isalnum() or c in "-_").rstrip() or "default"
    return trackio_dir() / f"{safe}.db"


def read_trackio(db_path: Path, *, run: str | None = None, project: str | None = None) -> MetricLog:
    """Metrics of one run of a trackio project database (read-only).

    Raises:
        InvalidSpecError: ("source") the file is not a trackio database, or the run is ambiguous/unknown.
    """
    uri = f"file:{db_path}?mode=ro"
    try:
        with sqlite3.connect(uri, uri=True, timeout=5.0) as conn:
            runs = [row[0] for row in conn.execute("SELECT DISTINCT run_name FROM metrics ORDER BY run_name")]
            if run is None:
                if len(runs) != 1:
                    raise InvalidSpecError(
                        "source", f"trackio project has runs {runs}; name one as trackio:<project>:<run>"
                    )
                run = runs[0]
            elif run not in runs:
                raise InvalidSpecError("source", f"trackio project has no run {run!r}; runs: {runs}")
            rows = conn.execute(
                "SELECT step, metrics FROM metrics WHERE run_name = ? ORDER BY step, id", (run,)
            ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise InvalidSpecError("source", f"{db_path} is not a readable trackio database ({exc})") from None
    name = f"trackio:{project or db_path.stem}:{run}"
    # Not into trackio's own folder: plots of trackio runs go to $CARL_HOME/observe/.
    plot = carl_home() / "observe" / f"trackio-{db_path.stem}-{re.sub(r'[^A-Za-z0-9_-]', '_', run)}.png"
    log = MetricLog(name, "trackio", default_plot_path=plot)
    for step, blob in rows:
        text = blob.decode() if isinstance(blob, (bytes, bytearray)) else blob
        record = json.loads(text)
        if isinstance(record, dict):
            _add_record(log, step, record)
    return log.finish()


def resolve(source: str) -> MetricLog:
    """Read the metrics of `source`: a job id, a run dir, a trainer_state.json, a JSONL file, or trackio.

    Raises:
        InvalidSpecError: ("source") the path exists but is none of the readable kinds, or is malformed.
        JobNotFoundError: `source` looks like a job id and no such job's run directory exists.
    """
    source = source.strip()
    if not source:
        raise InvalidSpecError("source", "must be a job id, a run directory, a metrics file or trackio:<project>")
    if source.startswith("trackio:"):
        project, _, run = source.removeprefix("trackio:").partition(":")
        db_path = trackio_db_path(project)
        if not project or not db_path.is_file():
            raise InvalidSpecError("source", f"no trackio project {project!r} in {trackio_dir()}")
        return read_trackio(db_path, run=run or None, project=project)
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "events.jsonl").exists() or (path / "spec.json").exists() or (path / "checkpoints").is_dir():
            return read_run_dir(path, job_id=path.name if path.resolve().parent == runs_dir().resolve() else None)
        if (path / "trainer_state.json").is_file():
            return read_trainer_state(path / "trainer_state.json")
        raise InvalidSpecError("source", f"{path} is a folder with no events.jsonl, spec.json or trainer_state.json")
    if path.is_file():
        if path.suffix == ".db":
            return read_trackio(path)
        if path.suffix == ".jsonl":
            return read_jsonl(path)
        if path.suffix == ".json":
            return read_trainer_state(path)
        raise InvalidSpecError("source", f"{path.name}: expected a .jsonl, .json or trackio .db file")
    if _JOB_ID.match(source):
        run_path = runs_dir() / source
        if run_path.is_dir():
            return read_run_dir(run_path, job_id=source)
        raise JobNotFoundError(source)
    raise InvalidSpecError("source", "no such file or directory", got=source)
