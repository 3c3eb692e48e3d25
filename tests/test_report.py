"""The report from constructed run records: grouping of seeds, significance markers, the Pareto front,
escaping, self-containment, failed runs, and several experiments in one report."""

import json
import logging
import re

import pandas as pd
import pytest

from ragft.record.cost import MemoryCost, TrainingCost
from ragft.record.run import RECORD_FILE
from ragft.report.__main__ import main as report_main
from ragft.report.groups import averaged, group_runs, load_runs
from ragft.report.plots import pareto_front
from ragft.report.render import build_report, cell, markdown_table, text_cell, write_report
from tests.fake_runs import write_experiment, write_failed_run, write_run


def test_model_text_cannot_break_the_table_or_inject_html():
    text = "a | b\n<script>alert(1)</script>\rc"
    assert cell(text) == "a \\| b<br>&lt;script&gt;alert(1)&lt;/script&gt;<br>c"
    # model and data text: its Markdown shows as typed (no link, no emphasis, no heading)
    assert text_cell("[x](javascript:alert(1)) *b* # h") == "\\[x\\](javascript:alert(1)) \\*b\\* \\# h"


def test_example_ids_and_outputs_are_escaped_in_markdown(tmp_path):
    exp = tmp_path / "md"
    write_run(exp, "zero_shot", [1.0] * 3, output="[click](javascript:alert(1)) | **bold**")
    markdown = build_report([exp]) and write_report(exp)[0].read_text()
    assert "\\[click\\](javascript:alert(1)) \\| \\*\\*bold\\*\\*" in markdown
    assert "[click](" not in markdown


def test_markdown_table_has_a_header_a_rule_and_one_line_per_row():
    frame = pd.DataFrame({"score": ["0.5", "0.7"]}, index=["zero_shot", "rag"])
    assert markdown_table(frame, "run").splitlines() == [
        "| run | score |",
        "|---|---|",
        "| zero_shot | 0.5 |",
        "| rag | 0.7 |",
    ]
    assert markdown_table(pd.DataFrame()) == "_(none)_"


def test_pareto_front_keeps_only_undominated_points_cheapest_first():
    costs = [1.0, 2.0, 3.0, 4.0, 2.0]
    quality = [0.2, 0.6, 0.5, 0.9, 0.6]
    # (3.0, 0.5) is beaten by (2.0, 0.6); the second (2.0, 0.6) ties the first and adds nothing
    assert pareto_front(costs, quality) == [0, 1, 3]
    assert pareto_front([], []) == []


def test_significant_gains_and_losses_are_marked_against_the_baseline(tmp_path):
    exp = write_experiment(tmp_path)
    write_run(exp, "lora", [0.0] * 40)  # worse than zero_shot's 25% on every example it got right
    board = build_report([exp]).tables["leaderboard"]
    assert board.loc["few_shot", "exact_match"].endswith("▲")
    assert board.loc["lora", "exact_match"].endswith("▼")
    assert not board.loc["rag", "exact_match"].endswith(("▲", "▼"))  # identical to the baseline


def test_runs_differing_only_by_seed_are_aggregated(tmp_path):
    exp = tmp_path / "seeds"
    for seed, period in ((0, 2), (1, 4), (2, 2)):
        write_run(exp, "lora", [float(i % period == 0) for i in range(40)], seed=seed)
    write_run(exp, "zero_shot", [0.0] * 40)
    groups = group_runs(load_runs(exp))
    lora = next(g for g in groups if g.label == "lora")
    assert lora.seeds == [0, 1, 2]
    # per example: mean over seeds; overall mean (0.5 + 0.25 + 0.5) / 3
    assert lora.scores["exact_match"].mean == pytest.approx((0.5 + 0.25 + 0.5) / 3)
    assert lora.scores["exact_match"].seed_sd == pytest.approx(pd.Series([0.5, 0.25, 0.5]).std())
    report = build_report([exp])
    assert report.tables["leaderboard"].loc["lora", "seeds"] == "0, 1, 2"
    assert "sd 0.144" in report.tables["leaderboard"].loc["lora", "exact_match"]


def test_configurations_sharing_an_arm_get_distinct_labels(tmp_path):
    exp = tmp_path / "sweep"
    write_run(exp, "lora", [1.0] * 10, settings={"adaptation.r": 8})
    write_run(exp, "lora", [0.0] * 10, settings={"adaptation.r": 16})
    labels = [g.label for g in group_runs(load_runs(exp))]
    assert len(set(labels)) == 2 and all(re.fullmatch(r"lora \([0-9a-f]{6}\)", label) for label in labels)


def test_html_report_is_self_contained_and_escapes_model_text(tmp_path):
    exp = write_experiment(tmp_path)
    written = write_report(exp)
    assert {p.name for p in written} >= {"report.md", "report.html", "quality_cost.png", "metrics.png", "runs.csv"}
    page = (exp / "report.html").read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;document.title=" in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched from elsewhere
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 2
    for section in ("Quality against cost", "Cost", "Retrieval", "Leakage", "Example predictions"):
        assert section in page
    assert "e0~t9 (1.00)" in page  # the recorded leak is listed
    markdown = (exp / "report.md").read_text()
    assert "![quality against cost](quality_cost.png)" in markdown and "<script>" not in markdown


def test_two_experiments_compare_in_one_report(tmp_path, capsys):
    first = write_experiment(tmp_path, "exp_a")
    second = tmp_path / "exp_b"
    write_run(second, "lora", [1.0] * 40)
    assert report_main([str(first), str(second), "--baseline", "exp_a/zero_shot"]) == 0
    out = tmp_path / "exp_a_vs_exp_b"
    board = build_report([first, second], "exp_a/zero_shot").tables["leaderboard"]
    assert list(board.index) == ["exp_a/zero_shot", "exp_a/few_shot", "exp_a/rag", "exp_b/lora"]
    assert board.loc["exp_b/lora", "exact_match"].endswith("▲")
    assert (out / "report.html").is_file() and "exp_b/lora" in (out / "report.md").read_text()
    assert not (first / "report.md").exists()  # a comparison does not touch the experiments' own reports


def test_report_command_fails_clearly(tmp_path, capsys):
    assert report_main([str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report_main([str(tmp_path / "empty")]) == 2
    exp = write_experiment(tmp_path)
    assert report_main([str(exp), "--baseline", "nope"]) == 2
    assert "baseline 'nope' is not one of the runs" in capsys.readouterr().err


def test_settings_differing_in_an_empty_mapping_show_in_the_differences(tmp_path):
    exp = tmp_path / "metrics"
    write_run(exp, "rag", [1.0] * 10, settings={"task.metrics.rouge_l": {}})
    write_run(exp, "rag", [0.0] * 10, settings={"task.metrics.rouge_l": {}, "task.metrics.chrf": {}})
    groups = group_runs(load_runs(exp))
    assert len(groups) == 2 and all(len(g.runs) == 1 for g in groups)
    differences = build_report([exp]).tables["config_diff"]
    assert list(differences.index) == ["task.metrics.chrf"]


def test_unscored_examples_are_left_out_not_marked_significant(tmp_path):
    exp = tmp_path / "nan"
    write_run(exp, "zero_shot", [0.0] * 20)
    write_run(exp, "rag", [float("nan")] + [0.0] * 19)
    report = build_report([exp])
    assert not report.tables["leaderboard"].loc["rag", "exact_match"].endswith(("▲", "▼"))
    assert report.tables["versus"].loc["rag", "exact_match"].startswith("+0.000 ")


def test_runs_of_another_task_are_not_paired_with_the_baseline(tmp_path):
    first = write_experiment(tmp_path, "exp_a")
    other = tmp_path / "exp_b"
    write_run(other, "lora", [1.0] * 40, task="other_task")  # same example ids e0..e39, other examples
    report = build_report([first, other], "exp_a/zero_shot")
    assert "exp_b/lora" not in report.tables["versus"].index
    assert not report.tables["leaderboard"].loc["exp_b/lora", "exact_match"].endswith("▲")


def test_figures_a_run_does_not_record_show_as_dashes(tmp_path):
    report = build_report([write_experiment(tmp_path)])
    assert report.tables["cost"].loc["rag", "train time (s)"] == "–"  # it trains nothing
    assert report.tables["cost"].loc["rag", "prompt tokens/example"] == "10"
    assert report.tables["retrieval"].loc["rag", "train retriever (s)"] == "–"  # its retriever is not trained
    assert list(report.tables["retrieval"].index) == ["rag"]


def test_config_differences_name_data_files_not_where_they_were_read_from(tmp_path):
    exp = tmp_path / "paths"
    write_run(exp, "rag", [1.0] * 4, settings={"task.corpus.path": "corpora/a/v1.jsonl"})
    write_run(exp, "lora", [1.0] * 4, settings={"task.corpus.path": "corpora/b/v2.jsonl"})
    differences = build_report([exp]).tables["config_diff"]
    assert list(differences.loc["task.corpus.path"]) == ["v1.jsonl", "v2.jsonl"] or list(
        differences.loc["task.corpus.path"]
    ) == ["v2.jsonl", "v1.jsonl"]


def test_a_failed_run_is_listed_and_left_out_of_every_comparison(tmp_path):
    exp = write_experiment(tmp_path)
    write_failed_run(exp, "lora", stage="train", message="CUDA out of memory.\nTried to allocate <b>2 GiB</b>")
    report = build_report([exp])
    failed = report.tables["failed"]
    assert list(failed.index) == ["lora"]
    assert failed.loc["lora", "stage"] == "train"
    assert failed.loc["lora", "error"] == "RuntimeError: CUDA out of memory. Tried to allocate <b>2 GiB</b>"
    for name in ("leaderboard", "versus", "cost", "categories"):
        assert "lora" not in report.tables[name].index and "lora" not in report.tables[name].columns, name
    assert [g.label for g in report.groups] == ["zero_shot", "few_shot", "rag"]
    write_report(exp)
    markdown = (exp / "report.md").read_text()
    assert "## Failed runs" in markdown and "3 runs and 1 failed, up to 40" in markdown
    assert "| lora | train | RuntimeError: CUDA out of memory. Tried to allocate &lt;b&gt;2 GiB&lt;/b&gt; |" in markdown
    page = (exp / "report.html").read_text()
    assert 'id="failed"' in page and "<b>2 GiB" not in page and "&lt;b&gt;2 GiB&lt;/b&gt;" in page
    table = pd.read_csv(exp / "runs.csv")
    assert table.set_index("arm").loc["lora", "status"] == "failed"


def test_a_report_of_failed_runs_only_lists_them(tmp_path):
    exp = tmp_path / "broken"
    write_failed_run(exp, "zero_shot", stage="load_generator", error="OSError", message="no such model")
    written = write_report(exp)
    assert [p.name for p in written] == ["report.md", "report.html", "runs.csv", "runs.parquet"]
    markdown = (exp / "report.md").read_text()
    assert "| zero_shot | load_generator | OSError: no such model |" in markdown
    assert "No run finished" in markdown and "## Quality" not in markdown
    assert "OSError: no such model" in (exp / "report.html").read_text()


def test_two_seeds_of_one_configuration_form_one_row_with_their_spread(tmp_path):
    exp = tmp_path / "two_seeds"
    write_run(exp, "rag", [1.0] * 10, seed=0)
    write_run(exp, "rag", [0.0] * 5 + [1.0] * 5, seed=1)
    board = build_report([exp]).tables["leaderboard"]
    assert list(board.index) == ["rag"] and board.loc["rag", "seeds"] == "0, 1"
    assert board.loc["rag", "exact_match"].startswith("0.750 [") and "sd 0.354" in board.loc["rag", "exact_match"]


def test_runs_whose_data_differ_are_never_grouped_though_their_arm_is_the_same(tmp_path):
    """Same arm, same settings, same seed: only the data's content differs, so the group keys do."""
    exp = tmp_path / "data_versions"
    write_run(exp, "rag", [1.0] * 10, group_key="a" * 16)
    write_run(exp, "rag", [0.0] * 10, group_key="b" * 16)
    groups = group_runs(load_runs(exp))
    assert sorted(g.label for g in groups) == ["rag (aaaaaa)", "rag (bbbbbb)"]
    assert all(len(g.runs) == 1 for g in groups)
    board = build_report([exp], "rag (aaaaaa)").tables["leaderboard"]
    assert "seeds" not in board.columns and len(board) == 2


def test_the_report_never_reads_a_runs_config(tmp_path):
    exp = write_experiment(tmp_path)
    before = build_report([exp])
    for config in exp.glob("*/config.yaml"):
        config.unlink()
    after = build_report([exp])
    for name, table in before.tables.items():
        pd.testing.assert_frame_equal(table, after.tables[name], obj=name)
    assert write_report(exp)


def test_a_record_of_another_schema_is_skipped_naming_its_file(tmp_path, caplog):
    exp = write_experiment(tmp_path)
    record_file = next(exp.glob("rag-*")) / RECORD_FILE
    record_file.write_text(json.dumps({**json.loads(record_file.read_text()), "schema_version": 1}))
    with caplog.at_level(logging.WARNING):
        report = build_report([exp])
    assert [g.label for g in report.groups] == ["zero_shot", "few_shot"]
    assert str(record_file) in caplog.text


def test_seeds_costs_are_averaged_figure_by_figure_and_a_setting_stays_a_whole_number():
    first = TrainingCost(train_s=4.0, trainable_params=10, stored="adapter", memory=MemoryCost(peak_rss_mb=100.0))
    second = TrainingCost(train_s=6.0, trainable_params=10, stored="adapter", adapter_reused=True)
    mean = averaged([first, second])
    assert (mean.train_s, mean.trainable_params, mean.stored, mean.adapter_reused) == (5.0, 10, "adapter", True)
    assert isinstance(mean.trainable_params, int)  # the same whole number for every seed stays one
    assert mean.memory.peak_rss_mb == 50.0 and mean.memory.peak_cuda_mb is None
    assert averaged([None, None]) is None


def test_markers_follow_holm_adjusted_p_values_over_every_comparison(tmp_path):
    exp = tmp_path / "holm"
    write_run(exp, "zero_shot", [0.0] * 40)
    for arm in ("a", "b", "c", "d", "e", "f"):  # 6 of 40 examples better: raw p ~ 0.03 each
        write_run(exp, arm, [1.0] * 6 + [0.0] * 34)
    write_run(exp, "strong", [1.0] * 20 + [0.0] * 20)
    report = build_report([exp])
    versus, board = report.tables["versus"], report.tables["leaderboard"]
    raw = float(re.search(r" p=([0-9.e-]+)", versus.loc["a", "exact_match"]).group(1))
    assert raw < 0.05  # significant on its own ...
    assert not board.loc["a", "exact_match"].endswith("▲")  # ... but not among seven comparisons
    assert "*" not in versus.loc["a", "exact_match"].split()[0]
    assert board.loc["strong", "exact_match"].endswith("▲")  # survives the adjustment
    assert "(Holm " in versus.loc["strong", "exact_match"]


def test_the_headline_is_broken_down_by_each_marked_grouping_with_intervals(tmp_path):
    exp = tmp_path / "knowledge"
    scores = [0.0 if i % 4 == 0 else 1.0 for i in range(40)]  # right on every seen example, wrong on unseen
    write_run(exp, "zero_shot", [0.5] * 40)
    write_run(exp, "lora", scores)
    report = build_report([exp])
    table = report.breakdowns["knowledge"]
    assert list(table.columns) == ["seen (n=30)", "unseen (n=10)"]
    assert table.loc["lora", "seen (n=30)"] == "1.000 [1.000, 1.000]"
    assert table.loc["lora", "unseen (n=10)"].startswith("0.000 ")
    markdown, html = (path.read_text() for path in write_report(exp)[:2])
    assert "by `knowledge`" in markdown and 'id="by-knowledge"' in html
