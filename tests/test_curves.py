"""Data-efficiency curves from hand-made records: one curve per arm over the one setting its runs vary
in, the points' intervals, and where two curves cross."""

from __future__ import annotations

from pathlib import Path

from ragft.report.curves import crossings, curves_table, learning_curves
from ragft.report.groups import group_runs, load_runs
from tests.fake_runs import write_run

N = 40
SIZES = (15, 30, 60, 120)


def right_on(share: float) -> list[float]:
    return [float(i < share * N) for i in range(N)]


def efficiency_experiment(root: Path) -> Path:
    """few_shot flat at 0.5; lora from 0.2 to 0.8: lora passes few_shot between 30 and 60 examples."""
    exp = root / "efficiency"
    lora = {15: 0.2, 30: 0.4, 60: 0.6, 120: 0.8}
    for size in SIZES:
        write_run(exp, "few_shot", right_on(0.5), settings={"task.limits.train": size})
        write_run(exp, "lora", right_on(lora[size]), settings={"task.limits.train": size})
    write_run(exp, "zero_shot", right_on(0.1))
    return exp


def test_each_arm_run_at_several_sizes_draws_one_curve_over_that_setting(tmp_path):
    groups = group_runs(load_runs(efficiency_experiment(tmp_path)))
    curves = {c.arm: c for c in learning_curves(groups, "exact_match")}
    assert sorted(curves) == ["few_shot", "lora"]  # zero_shot ran once: no curve
    assert [x for x, _ in curves["lora"].points] == list(SIZES)
    assert [round(s.mean, 3) for _, s in curves["lora"].points] == [0.2, 0.4, 0.6, 0.8]
    assert all(s.ci_low <= s.mean <= s.ci_high for _, s in curves["lora"].points)
    table = curves_table(list(curves.values()))
    assert list(table.index) == ["few_shot (training examples)", "lora (training examples)"]
    assert table.loc["lora (training examples)", "60"].startswith("0.600 [")


def test_curves_over_several_settings_share_one_table_with_labelled_columns_and_no_gaps_shown_as_nan(tmp_path):
    """few_shot at four pool sizes with k=2, and at the largest with k=1 and k=3 as well."""
    exp = tmp_path / "two_settings"
    for size in SIZES:
        write_run(exp, "few_shot", right_on(0.5), settings={"task.limits.train": size, "context.builder.k": 2})
    for k in (1, 3):
        write_run(exp, "few_shot", right_on(k / 5), settings={"task.limits.train": 120, "context.builder.k": k})
    table = curves_table(learning_curves(group_runs(load_runs(exp)), "exact_match"))
    assert list(table.columns) == [*(f"train={size}" for size in SIZES), "k=1", "k=2", "k=3"]
    assert table.loc["few_shot (demonstrations)", "k=3"].startswith("0.600 [")
    assert table.loc["few_shot (demonstrations)", "train=15"] == "–"
    assert not table.isna().any().any()


def test_the_crossing_is_named_between_the_sizes_where_the_order_changes(tmp_path):
    groups = group_runs(load_runs(efficiency_experiment(tmp_path)))
    assert crossings(learning_curves(groups, "exact_match")) == [
        "lora passes few_shot between 30 and 60 training examples"
    ]


def test_a_crossing_through_a_tie_is_named_between_the_sizes_either_side(tmp_path):
    exp = tmp_path / "tie"
    for size, lora in zip(SIZES[:3], (0.2, 0.5, 0.8)):
        write_run(exp, "few_shot", right_on(0.5), settings={"task.limits.train": size})
        write_run(exp, "lora", right_on(lora), settings={"task.limits.train": size})
    assert crossings(learning_curves(group_runs(load_runs(exp)), "exact_match")) == [
        "lora passes few_shot between 15 and 60 training examples"
    ]


def test_for_a_metric_where_lower_is_better_passing_means_going_below(tmp_path):
    exp = tmp_path / "lower"
    for size, lora in zip(SIZES[:2], (0.8, 0.2)):
        write_run(exp, "few_shot", right_on(0.5), settings={"task.limits.train": size}, metric="hedge_rate")
        write_run(exp, "lora", right_on(lora), settings={"task.limits.train": size}, metric="hedge_rate")
    assert crossings(learning_curves(group_runs(load_runs(exp)), "hedge_rate")) == [
        "lora passes few_shot between 15 and 30 training examples"
    ]


def test_an_arm_tuned_at_each_size_is_one_curve(tmp_path):
    """What tuning chose differs from size to size; the curve is the tuned arm's."""
    exp = tmp_path / "tuned"
    for size, rate in zip(SIZES, (1e-3, 3e-4, 1e-4, 1e-4)):
        chosen = {"tune.chosen.training.learning_rate": rate, "training.learning_rate": rate}
        write_run(exp, "lora", right_on(size / 240), settings={"task.limits.train": size, **chosen})
    (curve,) = learning_curves(group_runs(load_runs(exp)), "exact_match")
    assert curve.arm == "lora" and [x for x, _ in curve.points] == list(SIZES)


def test_runs_that_differ_in_more_than_the_curve_setting_draw_no_curve(tmp_path):
    exp = tmp_path / "mixed"
    write_run(exp, "lora", right_on(0.2), settings={"task.limits.train": 15, "training.epochs": 1})
    write_run(exp, "lora", right_on(0.6), settings={"task.limits.train": 60, "training.epochs": 3})
    assert learning_curves(group_runs(load_runs(exp)), "exact_match") == []


def test_an_arm_run_over_two_settings_draws_a_curve_over_each(tmp_path):
    """few-shot at four training sizes with k=2, and at 120 examples with k=1..4: one curve over the
    training examples, one over the demonstrations, each from the runs that vary in it alone."""
    exp = tmp_path / "two_axes"
    for size in SIZES:
        write_run(exp, "few_shot", right_on(size / 240), settings={"task.limits.train": size, "context.builder.k": 2})
    for k in (1, 3, 4):
        write_run(exp, "few_shot", right_on(k / 8), settings={"task.limits.train": 120, "context.builder.k": k})
    curves = {c.setting: c for c in learning_curves(group_runs(load_runs(exp)), "exact_match")}
    assert sorted(curves) == ["context.builder.k", "task.limits.train"]
    assert [x for x, _ in curves["task.limits.train"].points] == list(SIZES)
    assert [x for x, _ in curves["context.builder.k"].points] == [1, 2, 3, 4]
    assert curves["context.builder.k"].points[1][1].mean == 0.5  # k=2 at 120 examples: in both curves
    assert {c.arm for c in curves.values()} == {"few_shot"}


def test_two_families_of_one_arm_over_one_setting_are_told_apart_by_what_differs(tmp_path):
    exp = tmp_path / "two_rates"
    for size in SIZES[:2]:
        for rate in (1e-4, 1e-3):
            write_run(exp, "lora", right_on(0.5), settings={"task.limits.train": size, "training.learning_rate": rate})
    arms = sorted(c.arm for c in learning_curves(group_runs(load_runs(exp)), "exact_match"))
    assert arms == ["lora (training.learning_rate=0.0001)", "lora (training.learning_rate=0.001)"]


def test_the_report_shows_the_curves_and_the_crossing(tmp_path):
    from ragft.report.render import write_report

    exp = efficiency_experiment(tmp_path)
    write_report(exp)
    markdown = (exp / "report.md").read_text(encoding="utf-8")
    assert "## Data efficiency" in markdown and "![data efficiency](curves.png)" in markdown
    assert "- lora passes few\\_shot between 30 and 60 training examples" in markdown or (
        "- lora passes few_shot between 30 and 60 training examples" in markdown
    )
    assert (exp / "curves.png").stat().st_size > 0
    assert 'id="curves"' in (exp / "report.html").read_text(encoding="utf-8")
