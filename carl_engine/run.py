"""`python -m carl_engine.run <spec.json | run_dir>`: run one job in this process.

The job process of every backend. It reads the spec, picks the handler for its `kind`
(default "train"), runs it, and writes `result.json` (a RunResult) into the run directory:
succeeded (exit 0), failed (exit 1, with the error and no traceback in result.json; the
traceback goes to the log), or cancelled on SIGTERM/SIGINT (exit 143; checkpoints already
on disk stay usable, nothing more is saved). Logs go to stdout, which the backend sends to
train.log.

Where the run directory is:
    a directory            that directory (its spec.json is the spec)
    .../spec.json          the folder holding it
    any other spec file    (a carl.yaml, a JSON elsewhere) a new run dir under $CARL_HOME/runs
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from carl_engine.errors import CarlError, InvalidSpecError
from carl_engine.runs import RunDir, RunResult

# kind -> "module:function" with signature run(spec: dict, run_dir: RunDir) -> RunResult
HANDLERS: dict[str, str] = {
    "train": "carl_engine.training.runner:run",
    "eval": "carl_engine.evaluation.job:run",
    "bench_ab": "carl_engine.bench.ab:run",
    "pipeline": "carl_engine.pipeline:run",
}
EXIT_FAILED = 1
EXIT_CANCELLED = 143

log = logging.getLogger("carl_engine.run")


class Cancelled(BaseException):
    """Raised in the main thread by the SIGTERM/SIGINT handler (a BaseException so that
    `except Exception` blocks in library code do not swallow it)."""


def resolve_handler(kind: str) -> Any:
    """The run function for a job kind.

    Raises:
        InvalidSpecError: an unknown kind, or a kind whose module is not installed yet.
    """
    if kind not in HANDLERS:
        raise InvalidSpecError("kind", f"must be one of {', '.join(HANDLERS)}", got=kind)
    module_name, _, function = HANDLERS[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise InvalidSpecError("kind", f"jobs of kind {kind!r} are not available: {module_name} does not exist") from None
        raise
    handler = getattr(module, function, None)
    if handler is None:
        raise InvalidSpecError("kind", f"jobs of kind {kind!r} are not available: {HANDLERS[kind]} is missing")
    return handler


def locate(target: str | Path) -> tuple[RunDir, dict[str, Any]]:
    """The run directory and the spec for a command-line argument.

    Raises:
        InvalidSpecError: nothing at the path, no spec.json in a directory, or an unreadable spec.
    """
    path = Path(target).expanduser()
    if path.is_dir():
        run_dir = RunDir(path)
        if not run_dir.spec_path.is_file():
            raise InvalidSpecError("run_dir", "has no spec.json", got=str(path))
        return run_dir, _read_spec(run_dir.spec_path)
    if not path.is_file():
        raise InvalidSpecError("spec", "no such file or run directory", got=str(target))
    spec = _read_spec(path)
    if path.name == "spec.json":
        return RunDir(path.parent), spec
    run_dir = RunDir.for_job(f"{spec.get('kind', 'train')}-{time.strftime('%Y%m%d-%H%M%S')}").create()
    run_dir.write_spec(spec)
    return run_dir, spec


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text()) or {}
        else:
            data = json.loads(path.read_text())
    except Exception as exc:  # json and yaml raise different types
        raise InvalidSpecError("spec", f"could not be read: {exc}", got=str(path)) from None
    if not isinstance(data, dict):
        raise InvalidSpecError("spec", "must be a mapping of fields", got=type(data).__name__)
    return data


def execute(spec: dict[str, Any], run_dir: RunDir) -> RunResult:
    """Run a spec's handler and turn every outcome into a RunResult (never raises, but for Cancelled)."""
    kind = spec.get("kind", "train")
    try:
        handler = resolve_handler(kind)
        result = handler(spec, run_dir)
    except Cancelled:
        raise
    except Exception as exc:  # the job's verdict is written either way
        traceback.print_exc()
        message = str(exc) if isinstance(exc, CarlError) else f"{type(exc).__name__}: {exc}"
        return _ended(run_dir, "failed", error=message)
    if not isinstance(result, RunResult):
        return _ended(run_dir, "failed", error=f"handler for {kind!r} returned {type(result).__name__}, not RunResult")
    return result


def _ended(run_dir: RunDir, status: str, *, error: str | None = None) -> RunResult:
    """A result for a run that did not finish normally: the last step reached and checkpoint."""
    steps = [e for e in run_dir.iter_events("progress") if e.get("step") is not None]
    latest = run_dir.latest_checkpoint()
    return RunResult(
        status=status,  # type: ignore[arg-type]
        step=int(steps[-1]["step"]) if steps else 0,
        max_steps=steps[-1].get("max_steps") if steps else None,
        checkpoint=str(latest) if latest else None,
        error=error,
    )


def _on_signal(signum: int, frame: Any) -> None:
    raise Cancelled(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(argv) != 1:
        print("usage: python -m carl_engine.run <spec.json | run_dir>", file=sys.stderr)
        return 2
    try:
        run_dir, spec = locate(argv[0])
    except InvalidSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    run_dir.append_event("state", state="running", reason=f"pid {os.getpid()}")
    try:
        result = execute(spec, run_dir)
    except Cancelled as why:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the result short
        log.info("cancelled by %s", why)
        result = _ended(run_dir, "cancelled", error=f"cancelled by {why}")
    finally:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, handler)
    run_dir.write_result(result)
    run_dir.append_event("state", step=result.step, state=result.status, reason=result.error)
    log.info("%s at step %s; result in %s", result.status, result.step, run_dir.result_path)
    return {"succeeded": 0, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}[result.status]


if __name__ == "__main__":
    sys.exit(main())
