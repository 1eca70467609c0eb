"""The A/B verdict: McNemar on paired outcomes, Holm correction, a winner only when it beats every arm."""

import pytest

from carl_engine.bench.ab import ABSpec, holm, summarize
from carl_engine.errors import InvalidSpecError
from carl_engine.evaluation import EvalMetrics, Interval


def metrics(correct: list[bool], phi: float = 0.5, div: float = 0.4) -> EvalMetrics:
    return EvalMetrics(
        n=len(correct), correct=correct, accuracy=Interval(value=sum(correct) / len(correct)),
        phi_mean=Interval(value=phi, low=phi - 0.01, high=phi + 0.01),
        diversity=Interval(value=div, low=div - 0.01, high=div + 0.01), mean_length=3.0,
    )


def test_holm_adjusts_the_smallest_p_value_by_the_number_of_tests():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_an_arm_that_is_right_where_the_others_are_wrong_wins():
    spec = ABSpec(arms=["task", "task+carl"], seeds=2)
    strong = [True] * 30 + [False] * 2
    weak = [False] * 30 + [False] * 2
    outcomes = {
        "task": [(0, metrics(weak), "a0"), (1, metrics(weak), "a1")],
        "task+carl": [(0, metrics(strong, phi=0.7), "b0"), (1, metrics(strong, phi=0.8), "b1")],
    }
    report = summarize(spec, outcomes)
    assert report.winner == "task+carl" and report.verdict.startswith("task+carl wins")
    assert "McNemar" in report.test
    carl = report.arms[1]
    assert carl.n == 64 and carl.accuracy.value == pytest.approx(60 / 64)
    assert carl.phi_mean.value == pytest.approx(0.75)  # mean over seeds, interval over seeds
    assert report.comparisons[0].b_only == 60 and report.comparisons[0].significant


def test_identical_arms_show_no_significant_difference():
    spec = ABSpec(seeds=1)
    same = [True, False] * 10
    outcomes = {arm: [(0, metrics(same), arm)] for arm in spec.arms}
    report = summarize(spec, outcomes)
    assert report.winner is None and report.verdict.startswith("no significant difference")
    assert all(c.p_value == 1.0 for c in report.comparisons) and len(report.comparisons) == 3


@pytest.mark.parametrize(
    ("data", "field"),
    [({"arms": ["task"]}, "arms"), ({"seeds": 0}, "seeds"), ({"alpha": 0.9}, "alpha"),
     ({"pipeline": {"num_generations": 1}}, "pipeline.num_generations")],
)
def test_bad_ab_specs_name_the_field(data, field):
    with pytest.raises(InvalidSpecError) as err:
        ABSpec.from_dict(data)
    assert err.value.field == field
