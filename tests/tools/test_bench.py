"""carl_bench: reward inline (tool, in-memory MCP client, CLI); ab submits a job; bad input writes nothing."""

from __future__ import annotations

import json

import pytest
from mcp import Client
from typer.testing import CliRunner

from carl_engine.errors import InvalidSpecError
from carl_studio.cli.app import app
from carl_studio.server.app import build_server
from carl_studio.tools.bench import BENCH
from tests.tools.support import scripted_context

SMALL = {"batch": 2, "length": 16, "vocab": 64, "stats_batch": 2, "stats_length": 32, "repeats": 1}


def test_the_reward_bench_answers_inline_with_its_ratios():
    out = BENCH.call({"bench": "reward", **SMALL}, scripted_context())
    assert out.bench == "reward" and out.job_id is None
    assert set(out.ratios) == {"from_logits_speedup", "from_stats_speedup"}
    assert out.throughput.from_logits.shape == [2, 16, 64]


def test_the_ab_bench_starts_a_bench_job_and_answers_at_once():
    ctx = scripted_context()
    out = BENCH.call({"bench": "ab", "seeds": 1, "arms": ["task", "task+carl"]}, ctx)
    assert out.bench == "ab" and out.job_id and "carl_status" in out.next
    job = ctx.jobs.get(out.job_id)
    assert job.kind == "bench" and job.spec["arms"] == ["task", "task+carl"]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [({"bench": "ab", "arms": ["task"]}, "arms"), ({"bench": "ab", "task": "chess"}, "task"),
     ({"bench": "ab", "alpha": 0.7}, "alpha"), ({"bench": "reward", "vocab": 1}, "vocab"),
     ({"bench": "tune"}, "bench")],
)
def test_bad_input_is_named_and_starts_no_job(arguments, field):
    ctx = scripted_context()
    with pytest.raises(InvalidSpecError) as err:
        BENCH.call(arguments, ctx)
    assert err.value.field == field
    assert ctx.jobs.list() == []


@pytest.mark.anyio
async def test_carl_bench_through_the_in_memory_mcp_client():
    async with Client(build_server(tools=[BENCH])) as client:
        result = await client.call_tool("carl_bench", {"bench": "reward", **SMALL})
        assert not result.is_error and result.structured_content["ratios"]["from_stats_speedup"] > 0


def test_carl_bench_reward_on_the_command_line_prints_json():
    result = CliRunner().invoke(app, ["bench", "reward", "--batch", "2", "--length", "16", "--vocab", "64",
                                      "--stats-batch", "2", "--stats-length", "32", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["bench"] == "reward"
    bad = CliRunner().invoke(app, ["bench", "ab", "--arms", "task"])
    assert bad.exit_code == 2 and "arms" in bad.output
