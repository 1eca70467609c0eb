"""`carl` commands: the same response models as the MCP tools, --json that parses, one-line errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from carl_studio.cli.app import app

runner = CliRunner()


def carl(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_train_in_the_foreground_follows_the_job_to_success(scripted):
    result = carl("train", "--max-steps", "3", "--interval", "0.1", "--json")
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["state"] == "succeeded" and job["step"] == 3 and job["metrics"]["carl/phi_mean"] == 0.5


def test_a_followed_job_that_fails_exits_non_zero(scripted):
    scripted(fail_at=2)
    result = carl("train", "--max-steps", "3", "--interval", "0.1")
    assert result.exit_code == 1 and "failed" in result.stdout and "scripted failure at step 2" in result.stdout


def test_train_with_compute_returns_the_job_id_and_status_logs_stop_follow_it(scripted):
    submitted = json.loads(carl("train", "--compute", "local", "--max-steps", "3", "--json").stdout)
    job_id = submitted["job_id"]
    assert submitted["backend"] == "local" and submitted["estimate"]["max_steps"] == 3
    followed = carl("logs", job_id, "--follow", "--interval", "0.1")
    assert followed.exit_code == 0 and "step 3/3" in followed.stdout
    assert carl("logs", job_id, "--tail", "1").stdout.strip().startswith("step 3/3")
    status = json.loads(carl("status", job_id, "--json").stdout)
    assert status["job"]["state"] == "succeeded" and status["job"]["checkpoint"].endswith("checkpoint-3")
    listed = json.loads(carl("status", "--json").stdout)
    assert [job["job_id"] for job in listed["jobs"]] == [job_id]
    stopped = json.loads(carl("stop", job_id, "--json").stdout)
    assert stopped["already_ended"] is True and stopped["job"]["state"] == "succeeded"
    assert job_id in carl("status").stdout


def test_bad_input_prints_one_line_and_exits_2(scripted):
    for args, text in [
        (("train", "--max-steps", "-1"), "max_steps"),
        (("train", "--rewards", "task=x"), "rewards: weights are numbers"),
        (("status", "zzzz9999"), "no job with job_id 'zzzz9999'"),
        (("train", "--compute", "nowhere"), "compute: unknown backend"),
    ]:
        result = carl(*args)
        assert result.exit_code == 2, (args, result.output)
        assert text in result.stderr and "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) <= 2  # one line, maybe wrapped once


def test_send_it_dry_run_prints_the_pipeline_plan(scripted):
    result = carl("train", "--send-it", "--dry-run", "--json")
    answer = json.loads(result.stdout)
    assert answer["kind"] == "pipeline" and answer["dry_run"] and len(answer["plan"]) == 5
    assert scripted().store.count() == 0


def test_compute_json_parses_and_lists_backends(scripted):
    answer = json.loads(carl("compute", "--offline", "--json").stdout)
    assert {"local", "hf_jobs", "runpod"} <= {b["name"] for b in answer["backends"]} and answer["flavors"]
    assert "flavors" in carl("compute", "--offline").stdout


def test_status_without_jobs_says_how_to_start_one(scripted):
    assert "no jobs yet" in carl("status").stdout


def test_bundle_writes_a_uv_script_for_a_spec(tmp_path, scripted):
    spec = tmp_path / "carl.yaml"
    spec.write_text("method: sft\nmax_steps: 2\n")
    result = carl("bundle", str(spec), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    (script,) = (tmp_path / "out").glob("*.py")
    assert script.read_text().startswith("# /// script") or "# /// script" in script.read_text()
    assert carl("bundle", str(tmp_path / "missing.yaml")).exit_code == 2


def test_carl_mcp_passes_its_options_to_the_server_and_refuses_http_without_a_token(scripted, monkeypatch):
    monkeypatch.delenv("CARL_MCP_TOKEN", raising=False)
    result = runner.invoke(app, ["mcp", "--transport", "http", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "without CARL_MCP_TOKEN" in result.stderr


def test_carl_train_without_arguments_is_a_carl_tiny_grpo_run_with_task_and_carl_rewards(scripted):
    answer = json.loads(carl("train", "--dry-run", "--json").stdout)
    assert answer["kind"] == "train" and answer["backend"] == "local"
    assert answer["plan"][0].startswith("grpo on carl-tiny with arithmetic, rewards task (1) + carl (1)")


def test_status_keeps_the_main_metrics_unless_all_are_asked_for():
    from carl_studio.tools.models import is_main_metric

    assert all(is_main_metric(name) for name in ("reward", "carl/phi_mean", "gate/state", "rewards/arithmetic/mean"))
    assert not any(is_main_metric(name) for name in ("rewards/arithmetic/std", "grpo/loss", "train_runtime", "epoch"))
