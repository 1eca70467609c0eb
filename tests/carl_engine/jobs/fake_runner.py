"""A stand-in for `python -m carl_engine.run <run_dir>` that keeps its contract without training.

It reads spec.json (max_steps, save_steps, resume_from), appends the events the real runner
appends (progress, metrics, checkpoint), writes checkpoints/checkpoint-<step>/trainer_state.json
with the global step, and ends with result.json. It continues from `resume_from`'s global step.
SIGTERM writes a cancelled result, as run.py does.

Behaviour from $CARL_FAKE_RUN (JSON): sleep (seconds per step), ignore_term (bool: ignore
SIGTERM), crash (exit 3 at this step without result.json), fail (write a failed result at this
step), hang_at (stop making progress at this step, still alive).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from carl_engine.runs import RunDir, RunResult


def main(run_dir: RunDir) -> int:
    spec = run_dir.read_spec()
    how = json.loads(os.environ.get("CARL_FAKE_RUN") or "{}")
    max_steps, save_steps = int(spec.get("max_steps") or 6), int(spec.get("save_steps") or 2)
    start = 0
    if spec.get("resume_from"):
        start = json.loads((Path(spec["resume_from"]) / "trainer_state.json").read_text())["global_step"]
    state = {"step": start, "checkpoint": spec.get("resume_from")}

    def on_term(signum, frame):
        run_dir.write_result(RunResult(status="cancelled", step=state["step"], checkpoint=state["checkpoint"]))
        sys.exit(143)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if how.get("ignore_term") else on_term)
    print(f"fake run of {spec.get('kind')} from step {start}", flush=True)
    run_dir.append_event("progress", step=start, max_steps=max_steps)
    for step in range(start + 1, max_steps + 1):
        if step == how.get("hang_at"):
            time.sleep(600)
        if step == how.get("crash"):
            os._exit(3)
        if step == how.get("fail"):
            run_dir.write_result(RunResult(status="failed", step=state["step"], error="fake failure"))
            return 1
        time.sleep(float(how.get("sleep", 0.02)))
        state["step"] = step
        run_dir.append_event("metrics", step=step, metrics={"loss": 1.0 / step, "reward": step / max_steps})
        print(f"step {step}/{max_steps}", flush=True)
        if step % save_steps == 0:
            folder = run_dir.checkpoints_dir / f"checkpoint-{step}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
            state["checkpoint"] = str(folder)
            run_dir.append_event("checkpoint", step=step, path=str(folder))
    run_dir.write_result(
        RunResult(
            status="succeeded", step=max_steps, max_steps=max_steps, checkpoint=state["checkpoint"],
            metrics={"loss": 1.0 / max_steps, "final": 1.0},
        )
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(RunDir(sys.argv[1])))
