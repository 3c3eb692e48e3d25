import numpy as np
import pytest

from ragft.eval.stats import paired_difference


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
