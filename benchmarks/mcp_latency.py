"""MCP server latency over a real stdio client (`carl-mcp` as a subprocess).

Measures:
1. cold start: from spawning `carl-mcp` to the answer of `tools/list` (the client's
   handshake included), repeated and summarised by its median;
2. `carl_status` of one job by id, with N jobs in the store (default 10,000): p50 / p99
   over many calls, each a full JSON-RPC round trip through the subprocess's pipes;
3. `carl_status` listing (newest 50 of N jobs): p50 / p99.

    .venv/bin/python benchmarks/mcp_latency.py [--jobs 10000] [--calls 1000] [--cold-starts 5] [--json]

The store is filled through the public JobStore API (create, then a transition to a final
state, so that neither the server's start-up reconcile nor status refreshes touch a backend).
A fresh temporary $CARL_HOME is used unless --carl-home is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

CARL_MCP = str(Path(sys.executable).with_name("carl-mcp"))


def percentile(samples_ms: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(samples_ms)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def fill_store(count: int) -> list[str]:
    """Create `count` finished jobs through the public store API; returns their ids."""
    from carl_engine.jobs.states import JobState
    from carl_engine.jobs.store import JobStore
    from carl_engine.runs import RunDir

    store = JobStore()
    have = store.count()
    ids = [job.job_id for job in store.list(limit=10_000)] if have else []
    spec = {"method": "grpo", "model": "carl-tiny", "max_steps": 30}
    for _ in range(max(0, count - have)):
        job = store.create(kind="train", spec=spec, backend="local", target=None,
                           run_dir_for=lambda job_id: RunDir.for_job(job_id).path, max_steps=30)
        store.transition(job.job_id, JobState.CANCELLED, reason="benchmark row", ended_at=time.time())
        ids.append(job.job_id)
    return ids


async def cold_start_ms(env: dict[str, str]) -> float:
    started = time.perf_counter()
    async with Client(StdioServerParameters(command=CARL_MCP, env=env)) as client:
        tools = await client.list_tools()
        elapsed = (time.perf_counter() - started) * 1000
    if not tools.tools:
        raise RuntimeError("the server listed no tools")
    return elapsed


async def status_latencies(env: dict[str, str], ids: list[str], calls: int, list_calls: int) -> dict[str, list[float]]:
    rng = random.Random(0)
    by_id, listing = [], []
    async with Client(StdioServerParameters(command=CARL_MCP, env=env)) as client:
        for job_id in rng.sample(ids, min(20, len(ids))):  # warm-up: imports, SQLite page cache
            await client.call_tool("carl_status", {"job_id": job_id})
        for _ in range(calls):
            job_id = rng.choice(ids)
            started = time.perf_counter()
            answer = await client.call_tool("carl_status", {"job_id": job_id})
            by_id.append((time.perf_counter() - started) * 1000)
            if answer.is_error or answer.structured_content["job"]["job_id"] != job_id:
                raise RuntimeError(f"carl_status failed: {answer.content}")
        for _ in range(list_calls):
            started = time.perf_counter()
            answer = await client.call_tool("carl_status", {"limit": 50})
            listing.append((time.perf_counter() - started) * 1000)
            if answer.is_error or len(answer.structured_content["jobs"]) != min(50, len(ids)):
                raise RuntimeError(f"carl_status listing failed: {answer.content}")
    return {"by_id": by_id, "list": listing}


def summary(samples: list[float]) -> dict[str, float]:
    return {"n": len(samples), "p50_ms": round(percentile(samples, 50), 3), "p99_ms": round(percentile(samples, 99), 3),
            "mean_ms": round(statistics.fmean(samples), 3)}


async def run(args: argparse.Namespace) -> dict:
    home = args.carl_home or tempfile.mkdtemp(prefix="carl-mcp-bench-")
    os.environ["CARL_HOME"] = home
    env = {"CARL_HOME": home, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cold = [await cold_start_ms(env) for _ in range(args.cold_starts)]  # empty store: start-up alone
    filled = time.perf_counter()
    ids = fill_store(args.jobs)
    fill_s = time.perf_counter() - filled
    cold_full = [await cold_start_ms(env) for _ in range(args.cold_starts)]
    latencies = await status_latencies(env, ids, args.calls, args.list_calls)
    return {
        "carl_home": home,
        "jobs_in_store": len(ids),
        "store_fill_s": round(fill_s, 1),
        "cold_start_to_tools_list_ms": {"empty_store": summary(cold), "full_store": summary(cold_full),
                                        "median_empty_ms": round(statistics.median(cold), 1),
                                        "median_full_ms": round(statistics.median(cold_full), 1)},
        "carl_status_by_id": summary(latencies["by_id"]),
        "carl_status_list_50": summary(latencies["list"]),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MCP server latency over a real stdio client.")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the store (default 10,000)")
    parser.add_argument("--calls", type=int, default=1000, help="carl_status calls by job id")
    parser.add_argument("--list-calls", type=int, default=200, help="carl_status listing calls")
    parser.add_argument("--cold-starts", type=int, default=5, help="server starts to time")
    parser.add_argument("--carl-home", default=None, help="reuse this CARL_HOME (default: a fresh temp dir)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    report = anyio.run(run, args)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    cold = report["cold_start_to_tools_list_ms"]
    print(f"jobs in store: {report['jobs_in_store']:,} (filled in {report['store_fill_s']} s)")
    print(f"cold start -> tools/list answer: median {cold['median_empty_ms']} ms (empty store), "
          f"{cold['median_full_ms']} ms ({report['jobs_in_store']:,} jobs), {args.cold_starts} starts each")
    for name in ("carl_status_by_id", "carl_status_list_50"):
        s = report[name]
        print(f"{name}: p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, mean {s['mean_ms']} ms over {s['n']} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
