"""An eval-gating agent loop over MCP: train -> evaluate -> push the first checkpoint that passes.

    python agent_examples/eval_gating_loop.py [--min-accuracy 0.5] [--budget 3] [--max-steps 50]
                                              [--local-dir ./passed | --repo you/carl-tiny-arith]

It starts the real CARL Studio server (`carl-mcp`) over stdio and drives it only through
its tools, as an agent would:
  1. carl_train   an SFT run of carl-tiny on the arithmetic task (returns a job id at once)
  2. carl_status  until the job ends (waiting poll_after_s between calls)
  3. carl_eval    the job's checkpoint against the gate (min accuracy, optional min diversity)
  4. gate passed  -> carl_push the checkpoint (to --repo with HF_TOKEN, or exported to --local-dir)
     gate failed  -> change one setting (double max_steps) and go back to 1, up to --budget runs.
Exit status: 0 a checkpoint passed and was pushed/exported; 1 no run passed within the budget
(or a job did not succeed); 2 the server refused a request. Progress goes to stderr; the
last stdout line is one JSON object with every attempt and the push.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

FINAL = {"succeeded", "failed", "cancelled", "lost"}
PASSED_ON = ("CARL_", "HF_", "TRANSFORMERS_", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM")


class Refused(Exception):
    """A tool answered with an error (bad request, missing credential, refusal)."""


def server_command() -> str:
    """`carl-mcp` next to this Python (a venv), else on PATH."""
    beside = Path(sys.executable).with_name("carl-mcp")
    return str(beside) if beside.exists() else shutil.which("carl-mcp") or "carl-mcp"


def log(message: str) -> None:
    print(f"[eval_gating_loop] {message}", file=sys.stderr, flush=True)


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a tool; its structured answer, or Refused with the tool's error text."""
    answer = await client.call_tool(tool, arguments)
    if answer.is_error:
        raise Refused(f"{tool}: {answer.content[0].text}")
    return answer.structured_content


async def train_and_wait(client: Client, settings: dict[str, Any], timeout_s: float, poll_s: float) -> dict[str, Any]:
    """Start a training job and follow it to its end (stopping it after `timeout_s`)."""
    started = await call(client, "carl_train", settings)
    job_id = started["job_id"]
    log(f"job {job_id} started: {started['plan'][0] if started.get('plan') else settings}")
    deadline = time.monotonic() + timeout_s
    while True:
        job = (await call(client, "carl_status", {"job_id": job_id}))["job"]
        if job["state"] in FINAL:
            return job
        if time.monotonic() > deadline:
            log(f"job {job_id} did not end within {timeout_s} s; stopping it")
            return (await call(client, "carl_stop", {"job_id": job_id, "reason": "gating loop timeout"}))["job"]
        await anyio.sleep(min(poll_s, job.get("poll_after_s") or poll_s))


def next_settings(settings: dict[str, Any], max_steps_cap: int) -> dict[str, Any] | None:
    """The one setting changed after a failed gate: twice the steps (None when already at the cap)."""
    if settings["max_steps"] >= max_steps_cap:
        return None
    return {**settings, "max_steps": min(settings["max_steps"] * 2, max_steps_cap)}


async def run(args: argparse.Namespace) -> int:
    env = {name: value for name, value in os.environ.items() if name.startswith(PASSED_ON)}
    settings: dict[str, Any] | None = {
        "model": "carl-tiny", "method": "sft", "dataset": "arithmetic", "max_steps": args.max_steps,
        "learning_rate": args.learning_rate, "batch_size": 16, "seed": args.seed, "save_steps": None,
    }
    gate = {"min_accuracy": args.min_accuracy, "n": args.eval_n, "group_size": 4, "max_new_tokens": 8}
    if args.min_diversity is not None:
        gate["min_diversity"] = args.min_diversity
    attempts: list[dict[str, Any]] = []
    pushed: dict[str, Any] | None = None
    async with Client(StdioServerParameters(command=server_command(), env=env), read_timeout_seconds=300) as client:
        try:
            while settings is not None and len(attempts) < args.budget:
                job = await train_and_wait(client, settings, args.timeout_s, args.poll_s)
                attempt: dict[str, Any] = {"job_id": job["job_id"], "max_steps": settings["max_steps"], "state": job["state"]}
                attempts.append(attempt)
                if job["state"] != "succeeded":
                    log(f"job {job['job_id']} {job['state']}: {job.get('error')}")
                    break
                verdict = await call(client, "carl_eval", {"checkpoint": job["job_id"], **gate})
                attempt.update(passed=verdict["passed"], reasons=verdict["reasons"],
                               accuracy=verdict["metrics"]["accuracy"]["value"])
                log(f"eval of {job['job_id']}: {verdict['verdict']} ({'; '.join(verdict['reasons'])})")
                if verdict["passed"]:
                    target = {"repo": args.repo} if args.repo else {"local_dir": args.local_dir}
                    pushed = await call(client, "carl_push", {"checkpoint": job["job_id"], **target})
                    log(f"pushed {pushed['checkpoint']} to {pushed.get('url') or pushed.get('local_dir')}")
                    break
                settings = next_settings(settings, args.max_steps_cap)
                if settings is not None:
                    log(f"gate failed; retraining with max_steps={settings['max_steps']}")
        except Refused as refused:
            log(f"refused: {refused}")
            print(json.dumps({"attempts": attempts, "pushed": None, "error": str(refused)}))
            return 2
    print(json.dumps({"attempts": attempts, "pushed": pushed and {k: pushed.get(k) for k in
                                                                   ("checkpoint", "job_id", "url", "local_dir")}}))
    return 0 if pushed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-accuracy", type=float, default=0.5, help="the gate: greedy accuracy at least this")
    parser.add_argument("--min-diversity", type=float, default=None, help="the gate: group diversity at least this")
    parser.add_argument("--eval-n", type=int, default=32, help="eval prompts per checkpoint")
    parser.add_argument("--budget", type=int, default=3, help="at most this many training runs")
    parser.add_argument("--max-steps", type=int, default=50, help="steps of the first run (doubled after a failure)")
    parser.add_argument("--max-steps-cap", type=int, default=1000, help="never train longer than this")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--repo", help="push the passing checkpoint to this Hub repo (needs HF_TOKEN)")
    target.add_argument("--local-dir", default="./carl-passed", help="export the passing checkpoint here (default)")
    parser.add_argument("--timeout-s", type=float, default=900, help="longest wait for one training job")
    parser.add_argument("--poll-s", type=float, default=2.0)
    return anyio.run(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
