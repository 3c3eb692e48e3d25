import numpy as np
import pytest

from ragft.eval.stats import holm_adjusted, paired_difference


def scores(values) -> dict[str, float]:  # noqa: ANN001
    return {f"e{i}": float(v) for i, v in enumerate(values)}


def test_a_constructed_improvement_is_detected_with_an_interval_around_it():
    rng = np.random.default_rng(0)
    base = rng.binomial(1, 0.4, 80)
    better = np.minimum(1, base + rng.binomial(1, 0.4, 80))  # true gain = 0.6 * 0.4 = 0.24
    result = paired_difference(scores(better), scores(base))
    assert result["p_value"] < 0.01
    assert result["ci_low"] <= result["diff"] <= result["ci_high"]
    assert result["ci_low"] < 0.24 < result["ci_high"]


def test_runs_that_differ_only_by_chance_are_rarely_significant():
    rng = np.random.default_rng(1)
    p_values = [
        paired_difference(scores(rng.binomial(1, 0.5, 60)), scores(rng.binomial(1, 0.5, 60)), seed=i, resamples=500)[
            "p_value"
        ]
        for i in range(40)
    ]
    assert np.mean(np.array(p_values) < 0.05) <= 0.15


def test_pairs_are_matched_by_example_id_not_position():
    base = {"a": 0.0, "b": 1.0}
    assert paired_difference({"b": 1.0, "a": 0.0}, base)["diff"] == 0.0
    assert paired_difference({"a": 1.0, "b": 1.0, "z": 0.0}, base) == pytest.approx(
        {"diff": 0.5, "n": 2, "ci_low": 0.0, "ci_high": 1.0, "p_value": 1.0}, abs=0.01
    )


def test_identical_runs_and_uniform_shifts_have_exact_answers():
    same = paired_difference(scores([0, 1, 1]), scores([0, 1, 1]))
    assert same["diff"] == 0 and same["p_value"] == 1.0
    shifted = paired_difference(scores([1] * 10), scores([0] * 10))
    assert shifted["diff"] == 1.0 and shifted["p_value"] == pytest.approx(2 / 2**10)


def test_runs_without_shared_examples_cannot_be_compared():
    with pytest.raises(ValueError, match="share no scored example"):
        paired_difference({"a": 1.0}, {"b": 1.0})


def test_holm_adjustment_matches_its_definition_on_a_worked_family():
    # sorted p = .01, .02, .03, .04 -> x4, x3, x2, x1 = .04, .06, .06, .04 -> running max .04, .06, .06, .06
    assert holm_adjusted([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm_adjusted([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1; order kept by the running maximum
    assert holm_adjusted([]) == []


def test_holm_keeps_the_familywise_error_rate_where_raw_p_values_do_not():
    rng = np.random.default_rng(3)
    families = rng.uniform(size=(2000, 10))  # ten true null hypotheses per family
    raw_any = np.mean((families < 0.05).any(axis=1))
    holm_any = np.mean([min(holm_adjusted(f)) < 0.05 for f in families])
    assert raw_any > 0.3  # ~40% of families would show at least one false "significant" result
    assert holm_any <= 0.07
