"""observe() puts it together: summaries, phases, stop rules, a PNG in the run dir; diagnose() asks Claude."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from standins.anthropic_api import anthropic_standin, messages_api  # noqa: F401  (fixture)
from standins.carl_runs import paper_run, write_jsonl, write_run_dir

from carl_engine.errors import InvalidSpecError, MissingCredentialsError, ServiceError
from carl_engine.observe import diagnose, observe
from carl_engine.runs import RunDir


def test_observing_a_job_summarizes_finds_phases_and_saves_a_png_in_its_run_dir():
    run = write_run_dir(RunDir.for_job("jobA"), paper_run(4))
    obs = observe("jobA")

    assert obs.job_id == "jobA" and obs.n_points == 47 and (obs.first_step, obs.last_step) == (0, 46)
    assert 20 <= obs.transition_step <= 25
    assert obs.signals.task == "accuracy" and obs.signals.disorder == "entropy" and obs.signals.phi == "carl/phi_mean"
    acc = next(m for m in obs.metrics if m.name == "accuracy")
    assert acc.trend == "rising" and acc.max > 0.95 and acc.first < 0.2
    assert {r.rule for r in obs.stop_rules} == {"non_finite", "reward_flat", "coherence_trap", "length_drift"}
    assert "Transition at step" in obs.summary
    assert obs.plot_path == str(run.path / "observe.png")
    assert (run.path / "observe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_nan_loss_makes_the_run_stop():
    records = paper_run(0)
    records[30]["loss"] = math.nan
    write_run_dir(RunDir.for_job("jobN"), records)
    obs = observe("jobN", plot=False)
    assert obs.should_stop and obs.plot_path is None
    verdict = next(r for r in obs.stop_rules if r.rule == "non_finite")
    assert verdict.status == "triggered" and verdict.evidence["first_step"] == 30


def test_a_jsonl_source_gets_its_plot_next_to_it(tmp_path):
    path = write_jsonl(tmp_path / "metrics.jsonl", paper_run(5))
    obs = observe(str(path), plot_path=tmp_path / "out" / "p.png")
    assert obs.source_kind == "jsonl" and (tmp_path / "out" / "p.png").exists()


def test_an_empty_run_is_described_not_failed():
    RunDir.for_job("jobE").create().write_spec({"kind": "train"})
    obs = observe("jobE")
    assert obs.n_points == 0 and obs.phases == [] and obs.plot_path is None
    assert "No metrics logged yet" in obs.summary


@pytest.mark.parametrize(
    "kwargs, field", [({"tail_fraction": 0.9}, "tail_fraction"), ({"phi_high": 0}, "phi_high"), ({"length_drift": -1}, "length_drift")]
)
def test_out_of_range_parameters_name_their_field(kwargs, field):
    with pytest.raises(InvalidSpecError) as info:
        observe("whatever", **kwargs)
    assert info.value.field == field


def test_importing_observe_loads_neither_numpy_nor_matplotlib():
    code = "import sys, carl_engine.observe; print(sorted(m for m in ('numpy', 'matplotlib', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_diagnose_without_a_key_says_which_variable_to_set():
    write_run_dir(RunDir.for_job("jobD"), paper_run(0))
    with pytest.raises(MissingCredentialsError, match="ANTHROPIC_API_KEY"):
        diagnose(observe("jobD", plot=False))


def test_diagnose_sends_the_structured_summary_and_returns_claudes_text(anthropic_standin):
    write_run_dir(RunDir.for_job("jobD"), paper_run(0))
    obs = observe("jobD", plot=False)
    result = diagnose(obs, model="claude-test-model")

    assert result.model == "claude-test-model" and result.text.startswith("Diagnosis of")
    (request,) = anthropic_standin.requests
    sent = request["messages"][0]["content"]
    assert json.loads(sent.split("\n", 1)[1])["transition_step"] == obs.transition_step
    assert "coherence trap" in request["system"]


def test_a_refused_key_is_a_service_error_that_never_shows_the_key(monkeypatch):
    write_run_dir(RunDir.for_job("jobD"), paper_run(0))
    obs = observe("jobD", plot=False)
    with messages_api(api_key="the-right-key") as (url, _):
        wrong = "sk-ant-wrong-key-SECRET-987654321"
        with pytest.raises(ServiceError) as info:
            diagnose(obs, api_key=wrong, base_url=url)
    assert "401" in str(info.value) and wrong not in str(info.value) and wrong not in repr(info.value.__dict__)


def test_signals_follow_trl_and_carl_names():
    from carl_engine.observe import pick_signals

    grpo = pick_signals(["reward", "rewards/arithmetic/mean", "rewards/carl/mean", "rewards/carl/std", "entropy",
                         "carl/phi_mean", "carl/diversity", "completions/mean_length", "gate/carl_weight"])
    assert (grpo.task, grpo.disorder, grpo.phi, grpo.diversity, grpo.length) == (
        "rewards/arithmetic/mean", "entropy", "carl/phi_mean", "carl/diversity", "completions/mean_length")
    sft = pick_signals(["loss", "entropy", "mean_token_accuracy", "num_tokens"])
    assert (sft.task, sft.disorder, sft.reward) == ("mean_token_accuracy", "entropy", None)
    phi_only = pick_signals(["reward", "carl/phi_mean"])
    assert (phi_only.task, phi_only.disorder) == ("reward", "1 - carl/phi_mean")
