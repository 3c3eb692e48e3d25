"""Paired comparison of two runs on the same test examples (scipy: bootstrap and permutation test)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

PERMUTATIONS = 9999  # resolution 1e-4: fine enough that Holm's adjustment over ~100 comparisons still works


def paired_difference(
    candidate: Mapping[str, float],
    baseline: Mapping[str, float],
    seed: int = 0,
    resamples: int = 2000,
    permutations: int = PERMUTATIONS,
) -> dict[str, float]:
    """Mean per-example difference (candidate - baseline) over the examples both runs scored (with a
    finite score).

    Returns the difference, its paired-bootstrap 95% interval, and the two-sided p-value of a paired
    permutation test (the sign of each example's difference flipped at random under the null).
    """
    shared = sorted(i for i in set(candidate) & set(baseline) if np.isfinite(candidate[i] - baseline[i]))
    if not shared:
        raise ValueError("the two runs share no scored example")
    diff = np.array([candidate[i] - baseline[i] for i in shared], dtype=float)
    result = {"diff": float(diff.mean()), "n": len(shared)}
    if np.ptp(diff) == 0:  # every example moved by the same amount: the sign-flip distribution is exact
        p_value = 1.0 if diff[0] == 0 else min(1.0, 2.0 / 2 ** len(diff))
        return {**result, "ci_low": result["diff"], "ci_high": result["diff"], "p_value": p_value}
    rng = np.random.default_rng(seed)
    interval = stats.bootstrap(
        (diff,), np.mean, n_resamples=resamples, method="percentile", rng=rng
    ).confidence_interval
    test = stats.permutation_test(
        (diff,), np.mean, permutation_type="samples", n_resamples=permutations, alternative="two-sided", rng=rng
    )
    return {**result, "ci_low": float(interval.low), "ci_high": float(interval.high), "p_value": float(test.pvalue)}


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (Holm 1979), in the given order.

    The i-th smallest of m p-values is multiplied by m - i (0-based i), running maxima keep the order,
    and values are capped at 1. Rejecting where the adjusted value is below alpha keeps the chance of
    any false positive in the whole family at most alpha, whatever the dependence between the tests.
    """
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (p.size - np.arange(p.size))
    adjusted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    result = np.empty_like(adjusted)
    result[order] = adjusted
    return [float(v) for v in result]
