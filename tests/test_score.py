"""`python -m ragft.score`: another system's outputs scored with the task's metrics into a run folder the
report reads; malformed predictions files are errors naming the file and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ragft.data.loading import task_from_config
from ragft.record.run import read_predictions, read_record
from ragft.report.groups import load_runs
from ragft.report.render import build_report, write_report
from ragft.score import main
from ragft.types import Example, TaskData
from tests.conftest import assert_nothing_written, compose_config, ragft_command
from tests.test_metrics import hedge

SMOKE = ("+debug=smoke",)  # tiny evaluation models; the first 6 test notes
WHOLE_TASK = (*SMOKE, "task.limits.train=null", "task.limits.test=null")  # every note: the hedge


def task_of(*overrides: str) -> TaskData:
    """The task the command scores against with these overrides."""
    return task_from_config(compose_config(*overrides).task)


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def score(predictions: Path, out: Path, *overrides: str) -> int:
    return main([*overrides, f"predictions={predictions}", f"out={out}"])


def metrics(run_dir: Path) -> dict[str, dict]:
    return json.loads((run_dir / "metrics.json").read_text())


def test_gold_scores_full_marks_and_the_hedge_at_most_a_fifth_of_the_protocol_facts(tmp_path):
    task = task_of(*WHOLE_TASK)
    test, train = task.split("test"), task.split("train")
    passages = {p.id: p.text for p in task.corpus}
    settings = compose_config().task.metrics.field_accuracy
    protocol_headers = {settings.sections[name] for name in settings.protocol_fields}
    gold = write_lines(
        tmp_path / "gold.jsonl",
        [{"id": e.id, "output": e.reference, "passages": [passages[d] for d in e.gold_passages]} for e in test],
    )
    hedged = write_lines(
        tmp_path / "hedge.jsonl", [{"id": e.id, "output": hedge(e, train, protocol_headers)} for e in test]
    )
    exp = tmp_path / "results" / "reports"
    assert score(gold, exp / "gold", *WHOLE_TASK) == 0
    assert score(hedged, exp / "vendor", *WHOLE_TASK, "name=vendor_x") == 0

    best, gaming = metrics(exp / "gold"), metrics(exp / "vendor")
    for name in ("field_accuracy", "protocol_fact_accuracy", "format_compliance", "rouge_l"):
        assert best[name]["mean"] == pytest.approx(1.0) and best[name]["n"] == len(test), name
    assert best["hedge_rate"]["mean"] == 0.0 and best["hedge_rate"]["higher_is_better"] is False
    assert gaming["protocol_fact_accuracy"]["mean"] <= 0.2 and gaming["hedge_rate"]["mean"] > 0.0
    assert best["groundedness"]["n"] == len(test) and "groundedness" not in gaming  # only where passages came
    assert not {"recall_at_k", "recall@1"} & set(best)  # retrieval metrics judge ragft's own retrievers
    assert best["embedding_similarity"]["mean"] == pytest.approx(1.0)  # the evaluation embedder: output = reference


def test_the_scored_folder_is_a_finished_run_the_report_shows(tmp_path):
    test = task_of(*SMOKE).split("test")
    predictions = write_lines(tmp_path / "vendor_x.jsonl", [{"id": e.id, "output": e.reference} for e in test])
    wrong = write_lines(tmp_path / "other.jsonl", [{"id": e.id, "output": "no report"} for e in test])
    exp = tmp_path / "results" / "medical_reports"
    assert score(predictions, exp / "vendor_x", *SMOKE) == 0
    assert score(wrong, exp / "other", *SMOKE) == 0

    record = read_record(exp / "vendor_x")
    assert record.status == "finished" and record.identity.arm == "vendor_x" and record.identity.exp == exp.name
    assert record.identity.task == "medical_reports" and record.identity.primary_metric == "field_accuracy"
    assert {name: s.mean for name, s in record.scores.items()} == {
        name: s["mean"] for name, s in metrics(exp / "vendor_x").items()
    }
    rows = read_predictions(exp / "vendor_x")
    assert [r["id"] for r in rows] == [e.id for e in test] and rows[0]["scores"]["field_accuracy"] == 1.0
    assert all(len(run.predictions) == len(test) for run in load_runs(exp))  # read from the folders as named

    report = build_report([exp], baseline="other")
    assert report is not None and {g.label for g in report.groups} == {"vendor_x", "other"}
    markdown = write_report(exp, baseline="other")[0].read_text()
    assert "vendor_x" in markdown and (exp / "runs.csv").read_text().count("vendor_x") >= 1


def test_scoring_again_replaces_the_run_but_never_another_folder(tmp_path, capsys):
    test = task_of(*SMOKE).split("test")
    predictions = write_lines(tmp_path / "x.jsonl", [{"id": e.id, "output": e.reference} for e in test])
    out = tmp_path / "exp" / "x"
    assert score(predictions, out, *SMOKE) == 0 and score(predictions, out, *SMOKE) == 0
    (tmp_path / "exp" / "mine").mkdir()
    (tmp_path / "exp" / "mine" / "notes.txt").write_text("keep")
    assert score(predictions, tmp_path / "exp" / "mine", *SMOKE) == 2
    assert "`out`" in capsys.readouterr().err and (tmp_path / "exp" / "mine" / "notes.txt").read_text() == "keep"


def malformed(test: list[Example]) -> dict[str, tuple[list[object], str]]:
    """Case -> (the file's lines, what the error says): each one wrong in a single place."""
    first, second, *rest = [{"id": e.id, "output": e.reference} for e in test]
    return {
        "unknown id": (
            [first, {"id": "note-x", "output": "a"}, second, *rest],
            r"line 2, field 'id': unknown id 'note-x'",
        ),
        "duplicate id": (
            [first, second, first, *rest],
            rf"line 3, field 'id': duplicate id '{first['id']}' \(first at line 1\)",
        ),
        "missing id": ([first, *rest], rf"no output for 1 of the {len(test)} test examples.*{second['id']}"),
        "not JSON": ([first, "{'id': 1", second, *rest], r"line 2: not valid JSON"),
        "not an object": ([first, second, "[1, 2]", *rest], r"line 3: expected a JSON object"),
        "no output": ([{"id": first["id"]}, second, *rest], r"line 1, field 'output': missing"),
        "output not text": ([first, {**second, "output": ["a"]}, *rest], r"line 2, field 'output': expected a string"),
        "passages not texts": (
            [{**first, "passages": "p"}, second, *rest],
            r"line 1, field 'passages': expected a list",
        ),
    }


CASES = ("unknown id", "duplicate id", "missing id", "not JSON", "not an object", "no output", "output not text")


@pytest.mark.parametrize("case", [*CASES, "passages not texts"])
def test_a_malformed_predictions_file_is_an_error_naming_its_line(case, tmp_path, capsys):
    lines, message = malformed(task_of(*SMOKE).split("test"))[case]
    path = write_lines(tmp_path / "outputs.jsonl", lines)
    assert score(path, tmp_path / "results" / "exp" / "outputs", *SMOKE) == 2
    error = capsys.readouterr().err
    assert error.startswith("ragft: error: ") and error.count("\n") == 1, error
    assert str(path) in error and re.search(message, error), error
    assert_nothing_written(tmp_path / "results")


def test_missing_options_and_files_are_errors_naming_them(tmp_path, capsys):
    assert main([*SMOKE, f"out={tmp_path / 'x'}"]) == 2
    assert "config `predictions`: must be set" in capsys.readouterr().err
    assert score(tmp_path / "absent.jsonl", tmp_path / "x", *SMOKE) == 2
    assert "absent.jsonl' does not exist" in capsys.readouterr().err
    assert score(tmp_path / "absent.jsonl", tmp_path / "x", "task=no_such_task") == 2
    assert "no_such_task" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "predictions=" in capsys.readouterr().out


@pytest.mark.integration
def test_the_command_exits_2_with_one_line_on_an_unknown_id(tmp_path):
    path = write_lines(tmp_path / "outputs.jsonl", [{"id": "note-x", "output": "a"}])
    result = ragft_command("ragft.score", *SMOKE, f"predictions={path}", f"out={tmp_path / 'exp' / 'x'}", expect=2)
    assert result.stderr.strip().splitlines()[-1].startswith(f"ragft: error: {path}, line 1, field 'id'")
