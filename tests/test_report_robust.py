"""The report in the face of damaged run folders and failures: unreadable runs are listed and left out,
the previous report stays whole when rendering or writing fails, and the command fails in one line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from ragft.record.run import PREDICTIONS_FILE, RECORD_FILE
from ragft.report import render
from ragft.report.__main__ import main as report_main
from ragft.report.groups import load_experiment
from ragft.report.render import build_report, write_report
from tests.fake_runs import write_experiment, write_run

REPORT_FILES = ("report.md", "report.html", "metrics.png", "quality_cost.png")


def run_dir(exp: Path, arm: str) -> Path:
    return next(exp.glob(f"{arm}-*"))


def truncate(path: Path) -> None:
    """Cut a file mid-way, as a full disk or a killed copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A toy experiment with five runs, three of them unreadable: a truncated record, truncated
    predictions, and a record of another schema in a folder of its own. Returns folder name -> file."""
    exp = write_experiment(tmp_path)  # zero_shot, few_shot, rag
    write_run(exp, "lora", [1.0] * 40)
    write_run(exp, "lora_rag", [0.5] * 40)
    truncate(run_dir(exp, "few_shot") / RECORD_FILE)
    truncate(run_dir(exp, "lora_rag") / PREDICTIONS_FILE)
    old = exp / "old_schema_run"
    old.mkdir()
    record = json.loads((run_dir(exp, "rag") / RECORD_FILE).read_text())
    (old / RECORD_FILE).write_text(json.dumps({**record, "schema_version": 1}))
    files = {
        run_dir(exp, "few_shot").name: RECORD_FILE,
        run_dir(exp, "lora_rag").name: PREDICTIONS_FILE,
        old.name: RECORD_FILE,
    }
    return exp, files


def test_unreadable_runs_are_listed_and_every_other_run_reported(damaged, caplog):
    exp, files = damaged
    with caplog.at_level(logging.WARNING):
        markdown, page = (path.read_text() for path in write_report(exp)[:2])
    report = build_report([exp])
    assert list(report.tables["leaderboard"].index) == ["zero_shot", "rag", "lora"]
    assert list(report.tables["unreadable"].index) == sorted(files)
    for folder, file in files.items():
        assert file in report.tables["unreadable"].loc[folder, "reason"]
        assert str(exp / folder / file) in caplog.text  # the warning names the file
    assert "schema 1" in report.tables["unreadable"].loc["old_schema_run", "reason"]
    section = markdown.split("## Unreadable runs", 1)[1].split("\n## ", 1)[0]
    assert all(f"| {render.md_text(folder)} | {file}" in section for folder, file in files.items())
    assert 'id="unreadable"' in page and all(folder in page for folder in files)


def test_unreadable_predictions_are_warned_about_once_per_process(damaged, caplog):
    exp, _ = damaged
    predictions = run_dir(exp, "lora_rag") / PREDICTIONS_FILE
    with caplog.at_level(logging.WARNING):
        write_report(exp)
        write_report(exp)  # the Hydra callback reports after every job of a sweep
    assert sum(str(predictions) in record.getMessage() for record in caplog.records) == 1


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"id": "e0", "scores": {}}\n[1, 2]\n', "line 2"),
        (b'{"id": "e0", "scores": {"exact_match": "high"}}\n', "line 1"),
        (b'{"scores": {}}\n', "line 1"),
        (b'{"id": "e0", "scores": {}, "breakdowns": ["seen"]}\n', "line 1"),
        (b'{"id": "e0", "output": "\xff\xfe"}\n', PREDICTIONS_FILE),
    ],
    ids=["not an object", "score not a number", "no id", "breakdowns not an object", "not UTF-8"],
)
def test_predictions_of_another_shape_make_the_run_unreadable(tmp_path, content, reason):
    exp = write_experiment(tmp_path)
    damaged_dir = run_dir(exp, "rag")
    (damaged_dir / PREDICTIONS_FILE).write_bytes(content)
    runs, unreadable = load_experiment(exp)
    assert [u.folder for u in unreadable] == [damaged_dir]
    assert reason in unreadable[0].reason and "\n" not in unreadable[0].reason
    assert sorted(run.record.identity.arm for run in runs) == ["few_shot", "zero_shot"]
    assert write_report(exp)


def test_an_experiment_of_unreadable_runs_only_gets_a_report_listing_them(tmp_path):
    exp = write_experiment(tmp_path)
    for folder in exp.iterdir():
        truncate(folder / RECORD_FILE)
    markdown = write_report(exp)[0].read_text()
    assert "## Unreadable runs" in markdown and "No run finished" in markdown
    assert all(folder.name in markdown for folder in exp.iterdir() if folder.is_dir())


def test_a_comparison_names_each_unreadable_folder_with_its_experiment(tmp_path):
    first, second = write_experiment(tmp_path, "exp_a"), write_experiment(tmp_path, "exp_b")
    truncate(run_dir(second, "rag") / PREDICTIONS_FILE)
    report = build_report([first, second], "exp_a/zero_shot")
    assert list(report.tables["unreadable"].index) == [f"exp_b/{run_dir(second, 'rag').name}"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in REPORT_FILES}


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob(".*tmp"))


def test_a_rendering_error_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    exp = write_experiment(tmp_path)
    write_report(exp)
    before = snapshot(exp)
    write_run(exp, "lora", [1.0] * 40)  # the next report would differ in every file

    def broken(report):
        raise RuntimeError("template error")

    monkeypatch.setattr(render, "render_html", broken)
    with pytest.raises(RuntimeError, match="template error"):
        write_report(exp)
    assert snapshot(exp) == before and leftovers(exp) == []


def test_a_write_error_leaves_the_previous_report_and_no_temporary_file(tmp_path, monkeypatch):
    exp = write_experiment(tmp_path)
    write_report(exp)
    before = snapshot(exp)
    write_run(exp, "lora", [1.0] * 40)
    write_bytes = Path.write_bytes

    def disk_full(path: Path, data: bytes) -> int:
        if path.name.startswith(".quality_cost.png"):  # the last file staged: report.md is staged by then
            raise OSError(28, "No space left on device")
        return write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_report(exp)
    assert snapshot(exp) == before and leftovers(exp) == []


def test_dollar_signs_in_labels_do_not_stop_the_figures(tmp_path):
    exp = tmp_path / "dollars"
    write_run(exp, "zero_shot", [0.0, 1.0] * 5)
    write_run(exp, "cost_$x^$", [1.0] * 10)  # unbalanced mathtext: matplotlib cannot parse it
    assert {path.name for path in write_report(exp)} >= {"metrics.png", "quality_cost.png"}


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ragft.report: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: (root / "file.txt").write_text("x") and root / "file.txt", "is not a folder"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "no run records"),
        (lambda root: write_experiment(root / "results").parent, "holds experiments, not runs"),
        (lambda root: run_dir(write_experiment(root), "rag"), "is one run's folder"),
    ],
    ids=["missing", "a file", "no runs", "a folder of experiments", "a run folder"],
)
def test_the_command_fails_in_one_line_on_a_folder_that_is_no_experiment(tmp_path, capsys, make, says):
    folder = make(tmp_path)
    assert report_main([str(folder)]) == 2
    captured = capsys.readouterr()
    assert says in one_error_line(captured.err) and captured.out == ""


def test_the_command_names_a_folder_it_cannot_write(tmp_path, capsys):
    exp = write_experiment(tmp_path)
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the comparison's folder would go")
    assert report_main([str(exp), str(exp), "--out", str(blocker / "report")]) == 2
    assert "cannot write the report" in one_error_line(capsys.readouterr().err)


def test_the_module_exits_2_without_a_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ragft.report", str(tmp_path / "missing")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    one_error_line(done.stderr)
