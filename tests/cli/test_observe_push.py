"""`carl observe` and `carl push`: the same tools, rendered for people or as --json; bad input exits 2."""

from __future__ import annotations

import json

from standins.carl_runs import paper_run, write_run_dir
from standins.hub_repos import hub_standin  # noqa: F401  (fixture)
from typer.testing import CliRunner

from carl_engine.runs import RunDir
from carl_studio.cli.app import app
from tests.carl_engine.test_hub import make_job, write_eval

runner = CliRunner()


def test_carl_observe_json_prints_the_tool_response_with_the_transition_step():
    write_run_dir(RunDir.for_job("c1"), paper_run(6))
    result = runner.invoke(app, ["observe", "c1", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert 20 <= answer["transition_step"] <= 25 and answer["plot_path"].endswith("observe.png")


def test_carl_observe_renders_phases_stop_rules_and_says_diagnose_needs_a_key():
    write_run_dir(RunDir.for_job("c2"), paper_run(7))
    result = runner.invoke(app, ["observe", "c2", "--diagnose", "--no-plot"])
    assert result.exit_code == 0, result.output
    for expected in ("transition", "crystallization", "reward_flat", "triggered", "ANTHROPIC_API_KEY", "next:"):
        assert expected in result.stdout, expected


def test_carl_observe_of_an_unknown_job_exits_2_naming_it():
    result = runner.invoke(app, ["observe", "ghost"])
    assert result.exit_code == 2 and "ghost" in result.output


def test_carl_push_pushes_a_passed_job_to_the_hub(hub_standin):
    _, hub = hub_standin
    write_eval(make_job("c3"), passed=True)
    result = runner.invoke(app, ["push", "c3", "--repo", "alice/c3"])
    assert result.exit_code == 0, result.output
    assert "pushed" in result.stdout and "passed" in result.stdout and "alice/c3" in hub.repos


def test_carl_push_refuses_a_failed_eval_unless_forced(hub_standin):
    _, hub = hub_standin
    write_eval(make_job("c4"), passed=False)
    refused = runner.invoke(app, ["push", "c4", "--repo", "alice/c4"])
    assert refused.exit_code == 2 and "force=true" in refused.output and hub.repos == {}
    forced = runner.invoke(app, ["push", "c4", "--repo", "alice/c4", "--force", "--json"])
    assert forced.exit_code == 0 and json.loads(forced.stdout)["forced"] is True


def test_carl_push_local_dir_exports_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    write_eval(make_job("c5"), passed=True)
    result = runner.invoke(app, ["push", "c5", "--local-dir", str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    assert "exported" in result.stdout and (tmp_path / "export" / "README.md").exists()


def test_carl_push_bad_input_exits_2_and_writes_nothing(tmp_path, monkeypatch):
    write_eval(make_job("c6"), passed=True)
    bad_repo = runner.invoke(app, ["push", "c6", "--repo", "not a repo"])
    assert bad_repo.exit_code == 2 and "repo" in bad_repo.output
    missing = runner.invoke(app, ["push", str(tmp_path / "nope"), "--repo", "alice/x"])
    assert missing.exit_code == 2 and "checkpoint" in missing.output
    monkeypatch.delenv("HF_TOKEN", raising=False)
    no_token = runner.invoke(app, ["push", "c6", "--repo", "alice/x"])
    assert no_token.exit_code == 2 and "HF_TOKEN" in no_token.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["carl_home"]
