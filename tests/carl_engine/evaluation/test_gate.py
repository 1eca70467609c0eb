import pytest

from carl_engine.errors import InvalidSpecError
from carl_engine.evaluation import EvalMetrics, GateThresholds, Interval, decide, validated


def metrics(acc: float, lo: float, hi: float, phi: float = 0.8, div: float | None = 0.5) -> EvalMetrics:
    return EvalMetrics(
        n=32,
        accuracy=Interval(value=acc, low=lo, high=hi),
        phi_mean=Interval(value=phi, low=phi - 0.01, high=phi + 0.01),
        diversity=Interval(value=div, low=None if div is None else div - 0.05, high=None if div is None else div + 0.05),
        mean_length=4.0,
    )


def test_thresholds_pass_and_fail_with_their_numbers_in_the_reasons():
    passed, reasons = decide(metrics(0.7, 0.5, 0.85), GateThresholds(min_accuracy=0.6, phi_max=0.9))
    assert passed
    assert reasons == ["pass: accuracy 0.700 >= 0.600", "pass: mean Φ 0.800 <= 0.900"]
    passed, reasons = decide(metrics(0.4, 0.25, 0.6), GateThresholds(min_accuracy=0.6, min_diversity=0.2))
    assert not passed
    assert reasons[0] == "fail: accuracy 0.400 < 0.600"
    assert reasons[1].startswith("pass: diversity")


def test_phi_band_catches_a_collapsed_model():
    passed, reasons = decide(metrics(0.9, 0.8, 0.95, phi=0.99), GateThresholds(phi_min=0.2, phi_max=0.95))
    assert not passed and reasons[1] == "fail: mean Φ 0.990 > 0.950"


def test_missing_diversity_fails_a_diversity_rule_and_says_why():
    passed, reasons = decide(metrics(0.9, 0.8, 0.95, div=None), GateThresholds(min_diversity=0.1))
    assert not passed and "group_size >= 2" in reasons[0]


def test_baseline_fails_only_when_intervals_do_not_overlap():
    base = metrics(0.6, 0.45, 0.73)
    overlapping = metrics(0.5, 0.35, 0.65)
    assert decide(overlapping, GateThresholds(), base)[0]
    worse = metrics(0.2, 0.1, 0.35)
    passed, reasons = decide(worse, GateThresholds(), base)
    assert not passed
    assert reasons[0].startswith("fail: accuracy 0.200 [0.100, 0.350] vs baseline 0.600")


def test_no_rules_pass_and_say_so():
    assert decide(metrics(0.0, 0.0, 0.1), GateThresholds()) == (True, ["pass: no gate rules given (metrics only)"])


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"min_accuracy": 1.5}, "min_accuracy"),
        ({"min_diversity": -0.1}, "min_diversity"),
        ({"phi_min": 0.9, "phi_max": 0.2}, "phi_min"),
        ({"max_accuracy": 0.2}, "max_accuracy"),
    ],
)
def test_out_of_range_thresholds_name_their_field(data, field):
    with pytest.raises(InvalidSpecError) as err:
        validated(GateThresholds, data, prefix="gate.")
    assert err.value.field == f"gate.{field}"
