"""carl_eval: inline through the tool and the in-memory MCP client; bad input writes nothing."""

from __future__ import annotations

import json
import shutil

import pytest
from mcp import Client

from carl_engine.errors import InvalidSpecError, JobNotFoundError
from carl_engine.evaluation import read_report
from carl_engine.runs import RunDir, RunResult
from carl_studio.server.app import build_server
from carl_studio.tools.base import ToolContext
from carl_studio.tools.eval import EVAL


@pytest.fixture
def job_with_checkpoint() -> RunDir:
    from carl_engine.models import ensure_carl_tiny

    run = RunDir.for_job("evaljob1").create()
    ckpt = run.checkpoints_dir / "checkpoint-2"
    shutil.copytree(ensure_carl_tiny(), ckpt)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    run.write_result(RunResult(status="succeeded", step=2, checkpoint=str(ckpt)))
    return run


def test_a_small_eval_answers_inline_with_the_verdict_and_writes_eval_json(job_with_checkpoint):
    out = EVAL.call({"checkpoint": "evaljob1", "n": 6, "group_size": 2, "max_new_tokens": 4,
                     "min_accuracy": 0.9}, ToolContext())
    assert out.mode == "inline" and out.passed is False and out.verdict == "fail"
    assert out.reasons[0].startswith("fail: accuracy") and "train again" in out.next
    assert out.metrics.n == 6 and out.metrics.correct == []  # per-prompt outcomes stay in eval.json
    assert out.eval_json == [str(job_with_checkpoint.eval_path)]
    assert len(read_report(job_with_checkpoint.path).metrics.correct) == 6


@pytest.mark.parametrize(
    ("arguments", "error", "field"),
    [
        ({"checkpoint": "evaljob1", "min_accuracy": 1.2}, InvalidSpecError, "min_accuracy"),
        ({"checkpoint": "evaljob1", "phi_min": 0.8, "phi_max": 0.3}, InvalidSpecError, "phi_min"),
        ({"checkpoint": "evaljob1", "baseline": "./no/such"}, InvalidSpecError, "baseline"),
        ({"checkpoint": "evaljob1", "task": "poetry"}, InvalidSpecError, "task"),
        ({"checkpoint": "/missing/checkpoint"}, InvalidSpecError, "checkpoint"),
        ({"checkpoint": "evaljob1", "n": 0}, InvalidSpecError, "n"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(job_with_checkpoint, arguments, error, field):
    ctx = ToolContext()
    with pytest.raises(error) as err:
        EVAL.call(arguments, ctx)
    assert err.value.field == field
    assert not job_with_checkpoint.eval_path.exists()
    assert ctx.jobs.list() == []


def test_an_unknown_job_id_is_named(job_with_checkpoint):
    with pytest.raises(JobNotFoundError, match="nosuchjob"):
        EVAL.call({"checkpoint": "nosuchjob"}, ToolContext())


@pytest.mark.anyio
async def test_carl_eval_through_the_in_memory_mcp_client(job_with_checkpoint):
    server = build_server(tools=[EVAL])
    async with Client(server) as client:
        result = await client.call_tool("carl_eval", {"checkpoint": "evaljob1", "n": 4, "group_size": 2,
                                                      "max_new_tokens": 3, "baseline": "evaljob1"})
        assert not result.is_error
        body = result.structured_content
        assert body["mode"] == "inline" and body["passed"] is True
        assert any("vs baseline" in r for r in body["reasons"])
        bad = await client.call_tool("carl_eval", {"checkpoint": "evaljob1", "min_diversity": 3})
        assert bad.is_error and "min_diversity" in bad.content[0].text


def test_carl_eval_on_the_command_line_exits_1_when_the_gate_fails_and_prints_json(job_with_checkpoint):
    from typer.testing import CliRunner

    from carl_studio.cli.app import app

    runner = CliRunner()
    failed = runner.invoke(app, ["eval", "evaljob1", "-n", "4", "--group-size", "2", "--max-new-tokens", "3",
                                 "--min-accuracy", "0.99", "--json"])
    assert failed.exit_code == 1, failed.output
    body = json.loads(failed.stdout)
    assert body["verdict"] == "fail" and body["reasons"][0].startswith("fail: accuracy")
    passed = runner.invoke(app, ["eval", "evaljob1", "-n", "4", "--group-size", "2", "--max-new-tokens", "3"])
    assert passed.exit_code == 0 and "PASS" in passed.output and "accuracy (greedy)" in passed.output
    bad = runner.invoke(app, ["eval", "evaljob1", "--phi-max", "7"])
    assert bad.exit_code == 2 and "phi_max" in bad.output


@pytest.mark.slow
def test_a_large_eval_runs_as_an_eval_job_and_leaves_its_verdict_for_carl_push(job_with_checkpoint):
    import time

    ctx = ToolContext()
    out = EVAL.call({"checkpoint": "evaljob1", "n": 65, "group_size": 2, "max_new_tokens": 3,
                     "min_accuracy": 0.0}, ctx)
    assert out.mode == "job" and out.job_id and out.passed is None
    deadline = time.monotonic() + 120
    while (job := ctx.jobs.get(out.job_id)).state.value not in ("succeeded", "failed", "lost") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.state.value == "succeeded", job.error
    assert job.kind == "eval" and "eval/accuracy" in job.metrics
    assert read_report(job.run_dir).metrics.n == 65
    assert read_report(job_with_checkpoint.path).checkpoint.endswith("checkpoint-2")
