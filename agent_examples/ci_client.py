"""A CI check over MCP: start the CARL Studio server over stdio, train carl-tiny, follow it, and exit
non-zero when the job does not succeed.

    python agent_examples/ci_client.py [--max-steps 4] [--method grpo] [--timeout-s 900]

Exit status: 0 the job succeeded; 1 it failed, was cancelled or lost, or did not end in time
(it is stopped then); 2 the server rejected the request (the tool error is printed).
Progress goes to stderr; one JSON line with the final status goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

FINAL = {"succeeded", "failed", "cancelled", "lost"}
PASSED_ON = ("CARL_", "HF_", "TRANSFORMERS_", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM")


def server_command() -> str:
    """`carl-mcp` next to this Python (a venv), else on PATH."""
    beside = Path(sys.executable).with_name("carl-mcp")
    return str(beside) if beside.exists() else shutil.which("carl-mcp") or "carl-mcp"


def log(message: str) -> None:
    print(f"[ci_client] {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> int:
    env = {name: value for name, value in os.environ.items() if name.startswith(PASSED_ON)}
    params = StdioServerParameters(command=server_command(), env=env)
    async with Client(params, read_timeout_seconds=300) as client:
        request = {"model": "carl-tiny", "method": args.method, "max_steps": args.max_steps, "seed": args.seed}
        started = await client.call_tool("carl_train", request)
        if started.is_error:
            log(f"carl_train refused: {started.content[0].text}")
            return 2
        job_id = started.structured_content["job_id"]
        log(f"job {job_id} started ({started.structured_content['run_dir']})")
        deadline = time.monotonic() + args.timeout_s
        while True:
            answer = await client.call_tool("carl_status", {"job_id": job_id})
            if answer.is_error:
                log(f"carl_status failed: {answer.content[0].text}")
                return 2
            job = answer.structured_content["job"]
            log(f"{job['state']} step {job['step']}/{job['max_steps']} reward={job['metrics'].get('reward')}")
            if job["state"] in FINAL:
                break
            if time.monotonic() > deadline:
                log(f"no verdict within {args.timeout_s} s; stopping {job_id}")
                job = (await client.call_tool("carl_stop", {"job_id": job_id, "reason": "ci timeout"})).structured_content["job"]
                break
            await anyio.sleep(min(args.poll_s, job.get("poll_after_s") or args.poll_s))
    print(json.dumps({k: job[k] for k in ("job_id", "state", "step", "max_steps", "checkpoint", "error", "metrics")}))
    if job["state"] != "succeeded":
        log(f"job {job_id} {job['state']}: {job.get('error') or 'no error recorded'}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--method", default="grpo", choices=("sft", "grpo", "dpo", "kto", "orpo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument("--poll-s", type=float, default=2.0)
    return anyio.run(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
