"""A job process for front-end tests: keeps the contract of `python -m carl_engine.run` without training.

    python scripted_run.py [--step-s SECONDS] [--fail-at STEP] <run_dir>

Reads max_steps from spec.json, prints a log line and appends a metrics event (reward and
the CARL components) per step, checkpoints every step, ends with result.json. SIGTERM writes
a cancelled result, as run.py does. The real trainer is exercised by the slow tests.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from carl_engine.runs import RunDir, RunResult


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--step-s", type=float, default=0.02)
    parser.add_argument("--fail-at", type=int, default=0)
    parser.add_argument("run_dir")
    args = parser.parse_args()
    run = RunDir(args.run_dir)
    max_steps = int(run.read_spec().get("max_steps") or 3)
    done = {"step": 0, "checkpoint": None}

    def on_term(signum, frame):
        run.write_result(RunResult(status="cancelled", step=done["step"], checkpoint=done["checkpoint"]))
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    run.append_event("progress", step=0, max_steps=max_steps)
    print(f"scripted run: {max_steps} steps", flush=True)
    for step in range(1, max_steps + 1):
        time.sleep(args.step_s)
        if step == args.fail_at:
            run.write_result(RunResult(status="failed", step=done["step"], error=f"scripted failure at step {step}"))
            return 1
        metrics = {"reward": step / max_steps, "carl/phi_mean": 0.5, "carl/multiscale": 0.4, "gate/carl_weight": 1.0}
        run.append_event("metrics", step=step, metrics=metrics)
        folder = run.checkpoints_dir / f"checkpoint-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        run.append_event("checkpoint", step=step, path=str(folder))
        done.update(step=step, checkpoint=str(folder))
        print(f"step {step}/{max_steps} reward={metrics['reward']:.2f}", flush=True)
    run.write_result(RunResult(status="succeeded", step=max_steps, max_steps=max_steps, checkpoint=done["checkpoint"],
                               metrics={"reward": 1.0, "carl/phi_mean": 0.5}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
