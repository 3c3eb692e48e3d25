"""Report figures (matplotlib, rendered off-screen to PNG bytes): quality against cost with the Pareto
front marked, each headline metric per run with its 95% interval, and data-efficiency curves."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ragft.report.costs import batch1_latency, compute_seconds  # noqa: E402
from ragft.report.curves import CURVE_SETTINGS, Curve  # noqa: E402
from ragft.report.escape import plot_text  # noqa: E402
from ragft.report.groups import RunGroup  # noqa: E402

COST_AXES: dict[str, Callable[[RunGroup], float]] = {
    "training + generation time (s)": compute_seconds,
    "latency at batch 1, p50 (s)": batch1_latency,
}


def pareto_front(costs: Sequence[float], qualities: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats: none is at most as costly and strictly better, or
    strictly cheaper and at least as good. Returned cheapest first; of points with the same cost and
    quality, only the first is listed."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -qualities[i]))
    front, best = [], -np.inf
    for i in order:
        if qualities[i] > best:
            front.append(i)
            best = qualities[i]
    return front


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def quality_cost_plot(groups: Sequence[RunGroup], metric: str) -> bytes:
    """One panel per cost axis: each run's `metric` (with its CI) against the cost, Pareto front joined."""
    scored = [g for g in groups if metric in g.scores]
    figure, axes = plt.subplots(1, len(COST_AXES), figsize=(6 * len(COST_AXES), 4.2), squeeze=False)
    for axis, (title, cost_of) in zip(axes[0], COST_AXES.items()):
        costs = [cost_of(g) for g in scored]
        means = [g.scores[metric].mean for g in scored]
        errors = np.array(
            [[m - g.scores[metric].ci_low for g, m in zip(scored, means)],
             [g.scores[metric].ci_high - m for g, m in zip(scored, means)]]
        )  # fmt: skip
        front = pareto_front(costs, means)
        axis.errorbar(costs, means, yerr=errors, fmt="none", ecolor="#9aa5b1", capsize=3, zorder=1)
        others = [i for i in range(len(scored)) if i not in front]
        axis.scatter([costs[i] for i in others], [means[i] for i in others], s=45, facecolors="white",
                     edgecolors="#52606d", zorder=2, label="dominated")  # fmt: skip
        axis.scatter([costs[i] for i in front], [means[i] for i in front], s=55, color="#c2410c", zorder=3,
                     label="Pareto front")  # fmt: skip
        axis.step([costs[i] for i in front], [means[i] for i in front], where="post", color="#c2410c", alpha=0.6)
        for g, x, y in zip(scored, costs, means):
            axis.annotate(plot_text(g.label), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        axis.set_xlabel(title)
        axis.set_ylabel(f"{plot_text(metric)} (95% CI)")
        axis.grid(alpha=0.3)
        axis.margins(x=0.12, y=0.08)  # room for the labels of the outermost points
        axis.legend(loc="best", fontsize=8)
    figure.suptitle(f"{plot_text(metric)} against cost: up and to the left is better")
    return _png(figure)


def metrics_plot(groups: Sequence[RunGroup], metrics: Sequence[str]) -> bytes:
    """Grouped bars: each headline metric per run, with its 95% interval."""
    metrics = [m for m in metrics if any(m in g.scores for g in groups)]
    width = 0.8 / max(len(groups), 1)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.4 * len(metrics) + 0.4 * len(groups)), 4.2))
    positions = np.arange(len(metrics))
    for k, g in enumerate(groups):
        summaries = [g.scores.get(m) for m in metrics]
        means = [s.mean if s else np.nan for s in summaries]  # a metric the run lacks: no bar, not a zero
        errors = np.array([[s.mean - s.ci_low if s else np.nan for s in summaries],
                           [s.ci_high - s.mean if s else np.nan for s in summaries]])  # fmt: skip
        axis.bar(positions + k * width, means, width, yerr=errors, capsize=2, label=plot_text(g.label))
    axis.set_xticks(positions + width * (len(groups) - 1) / 2, [plot_text(m) for m in metrics], rotation=20, ha="right")
    axis.set_ylabel("mean over test examples (95% CI)")
    axis.set_ylim(0, 1.05)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, ncol=min(len(groups), 5), loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    return _png(figure)


def curves_plot(curves: Sequence[Curve], metric: str) -> bytes:
    """One panel per quantity learned from (training examples, demonstrations, passages): each arm's
    `metric` at each value with its 95% interval, joined."""
    panels = sorted({c.setting for c in curves})
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for axis, setting in zip(axes[0], panels):
        for curve in (c for c in curves if c.setting == setting):
            xs = [x for x, _ in curve.points]
            means = [s.mean for _, s in curve.points]
            errors = np.array(
                [[s.mean - s.ci_low for _, s in curve.points], [s.ci_high - s.mean for _, s in curve.points]]
            )
            axis.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=plot_text(curve.arm))
        axis.set_xscale("log")
        axis.set_xlabel(plot_text(curves[0].counts if len(panels) == 1 else CURVE_SETTINGS[setting]))
        axis.set_ylabel(f"{plot_text(metric)} (95% CI)")
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize=8)
    figure.suptitle(f"{plot_text(metric)} against what each arm learns from")
    return _png(figure)
