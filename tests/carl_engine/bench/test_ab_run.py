"""The A/B bench job on carl-tiny: seed-matched arms trained, evaluated and compared."""

import json

import pytest

from carl_engine.bench.ab import run
from carl_engine.runs import RunDir


@pytest.mark.slow
def test_a_small_ab_bench_trains_each_arm_from_one_warm_start_and_gives_a_verdict(tmp_path):
    run_dir = RunDir(tmp_path / "ab").create()
    spec = {"kind": "bench_ab", "arms": ["task", "task+carl"], "seeds": 1, "sft_steps": 30, "grpo_steps": 2,
            "eval_n": 8, "eval_group_size": 2}
    result = run(spec, run_dir)
    assert result.status == "succeeded" and result.step == 30 + 2 * 2
    report = json.loads((run_dir.path / "ab.json").read_text())
    assert [a["arm"] for a in report["arms"]] == ["task", "task+carl"]
    for arm in report["arms"]:
        assert arm["n"] == 8 and 0.0 <= arm["accuracy"]["low"] <= arm["accuracy"]["high"] <= 1.0
        assert arm["phi_mean"]["value"] is not None and arm["diversity"]["value"] is not None
    assert "McNemar" in report["test"] and report["verdict"]
    checkpoints = [arm["per_seed"][0]["checkpoint"] for arm in report["arms"]]
    assert checkpoints[0] != checkpoints[1]  # one GRPO run per arm ...
    sft = [e for e in RunDir(run_dir.path / "seed-0").iter_events("stage") if e["stage"] == "sft"]
    assert [e["status"] for e in sft] == ["started", "completed"]  # ... from one shared SFT warm start
    assert result.metrics.keys() == {"task/accuracy", "task+carl/accuracy"}
