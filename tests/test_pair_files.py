"""Preference pairs from a file of pairs or from a finished run's answers: the right pairs, train examples
only, and every bad file or run refused with one located message."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ragft.data.pairs import read_pairs_file, read_run_pairs
from ragft.errors import ConfigError, DataError
from ragft.record.run import RunRecord, RunWriter, Summary
from ragft.types import Example, Prediction, PreferencePair, TaskData
from tests.fake_runs import PROVENANCE, cost, identity, write_failed_run

KEY = "adaptation.preference.source"
FIELDS = {"id": "qid", "rejected": "bad", "chosen": "good"}


def example(example_id: str) -> Example:
    return Example(id=example_id, input=f"note {example_id}", reference=f"report {example_id}")


@pytest.fixture
def task() -> TaskData:
    splits = {
        "train": [example("tr1"), example("tr2"), example("tr3")],
        "validation": [example("va1")],
        "test": [example("te1"), example("te2")],
    }
    places = {e.id: f"notes.jsonl, line {n}" for n, e in enumerate((e for s in splits.values() for e in s), 1)}
    return TaskData(name="toy", splits=splits, corpus=[], places=places)


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def assert_train_only(pairs: list[PreferencePair], task: TaskData) -> None:
    train = set(task.splits["train"])
    assert pairs and all(pair.example in train for pair in pairs)


def test_a_jsonl_file_gives_its_pairs_in_order(task, tmp_path):
    path = jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"qid": "tr1", "good": "fine", "bad": "wrong"},
            {"qid": "tr2", "good": "ok", "bad": "bad"},
            {"qid": "tr1", "good": "fine again", "bad": "wrong again"},  # several pairs for one id
        ],
    )
    pairs = read_pairs_file(path, FIELDS, task)
    assert [(p.example.id, p.chosen, p.rejected) for p in pairs] == [
        ("tr1", "fine", "wrong"),
        ("tr2", "ok", "bad"),
        ("tr1", "fine again", "wrong again"),
    ]
    assert pairs[0].example == task.splits["train"][0]
    assert [p.origin for p in pairs] == ["pairs.jsonl, line 1", "pairs.jsonl, line 2", "pairs.jsonl, line 3"]
    assert all(p.rejected_score is None for p in pairs)
    assert_train_only(pairs, task)


@pytest.mark.parametrize("fields", [{"id": "qid", "rejected": "bad"}, {"id": "qid", "rejected": "bad", "chosen": None}])
def test_an_unmapped_chosen_is_the_reference_in_a_csv(task, tmp_path, fields):
    path = tmp_path / "pairs.csv"
    pd.DataFrame([{"qid": "tr3", "bad": "no"}, {"qid": "tr2", "bad": "nope"}]).to_csv(path, index=False)
    pairs = read_pairs_file(path, fields, task)
    assert [(p.example.id, p.chosen, p.rejected, p.origin) for p in pairs] == [
        ("tr3", "report tr3", "no", "pairs.csv, row 1"),
        ("tr2", "report tr2", "nope", "pairs.csv, row 2"),
    ]


@pytest.mark.parametrize(("split", "example_id", "line"), [("test", "te2", 2), ("validation", "va1", 2)])
def test_a_pair_for_an_example_outside_train_is_refused(task, tmp_path, split, example_id, line):
    rows = [{"qid": "tr1", "good": "a", "bad": "b"}, {"qid": example_id, "good": "a", "bad": "b"}]
    with pytest.raises(DataError) as err:
        read_pairs_file(jsonl(tmp_path / "pairs.jsonl", rows), FIELDS, task)
    message = str(err.value)
    assert f"pairs.jsonl, line {line}, field 'qid': '{example_id}' is a {split} example" in message
    assert task.places[example_id] in message
    assert "pairs come from the train split only" in message
    assert f"no {split} example reaches training" in message


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"good": "a", "bad": "b"}, r"line 2, field 'qid': missing \(present: bad, good\)"),
        ({"qid": "tr1", "good": "a", "bad": ""}, r"line 2, field 'bad': empty"),
        ({"qid": "tr1", "good": None, "bad": "b"}, r"line 2, field 'good': empty"),
        ({"qid": "tr1", "good": "a", "bad": 3}, r"line 2, field 'bad': expected str, got int"),
        (
            {"qid": "tr1", "good": " same ", "bad": "same"},
            r"line 2, field 'bad': the same text as the chosen .*no pref",
        ),
        ({"qid": "tr9x", "good": "a", "bad": "b"}, r"line 2, field 'qid': unknown id 'tr9x'.*task 'toy'"),
    ],
)
def test_a_bad_pair_is_one_located_error(task, tmp_path, row, expected):
    rows = [{"qid": "tr1", "good": "a", "bad": "b"}, row]
    with pytest.raises(DataError, match=r"pairs.jsonl, " + expected):
        read_pairs_file(jsonl(tmp_path / "pairs.jsonl", rows), FIELDS, task)


def test_an_unknown_id_suggests_a_close_one(task, tmp_path):
    path = jsonl(tmp_path / "pairs.jsonl", [{"qid": "tr_1", "bad": "b"}])
    with pytest.raises(DataError, match=r"line 1, field 'qid': unknown id 'tr_1'.*did you mean 'tr1'\?"):
        read_pairs_file(path, {"id": "qid", "rejected": "bad"}, task)


def test_an_id_the_loaded_task_leaves_out_says_so(task, tmp_path):
    task.places["tr4"] = "notes.jsonl, line 9"  # in the file, but cut by task.limits
    path = jsonl(tmp_path / "pairs.jsonl", [{"qid": "tr4", "bad": "b"}])
    with pytest.raises(DataError, match=r"line 1, field 'qid': 'tr4' \(notes.jsonl, line 9\) is in none of"):
        read_pairs_file(path, {"id": "qid", "rejected": "bad"}, task)


def test_a_rejected_equal_to_the_reference_is_no_preference(task, tmp_path):
    path = jsonl(tmp_path / "pairs.jsonl", [{"qid": "tr2", "bad": "report tr2\n"}])
    with pytest.raises(DataError, match=r"line 1, field 'bad': the same text as the reference of example 'tr2'"):
        read_pairs_file(path, {"id": "qid", "rejected": "bad"}, task)


def test_an_empty_file_is_refused(task, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.jsonl: the file is empty \(no preference pairs\)"):
        read_pairs_file(path, FIELDS, task)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"id": "qid"}, r"no mapping for \['rejected'\]"),
        ({"id": None, "rejected": "bad"}, r"no mapping for \['id'\]"),
        ({"id": "qid", "rejected": "bad", "choosen": "good"}, r"unknown names \['choosen'\]"),
    ],
)
def test_a_bad_mapping_names_the_fields_key(task, tmp_path, fields, expected):
    path = jsonl(tmp_path / "pairs.jsonl", [{"qid": "tr1", "good": "a", "bad": "b"}])
    with pytest.raises(ConfigError, match=rf"config `{KEY}.fields`: {expected}"):
        read_pairs_file(path, fields, task)


def test_a_missing_file_names_the_path_key(task, tmp_path):
    with pytest.raises(ConfigError, match=rf"config `{KEY}.path`: .*does not exist"):
        read_pairs_file(tmp_path / "nowhere.jsonl", FIELDS, task)


def write_answers(exp_dir: Path, answers: list[tuple[Example, str, dict[str, float]]]) -> Path:
    """A finished run that answered `answers` (example, output, scores), written by the record's writer."""
    ident = identity(exp_dir, "zero_shot")
    writer = RunWriter(exp_dir / ident.run_id)
    writer.write_text("config.yaml", "tune:\n  split: train\n")
    writer.write_predictions(Prediction(e, prompt="p", output=out, scores=scores) for e, out, scores in answers)
    summary = Summary(mean=0.5, ci_low=0.0, ci_high=1.0, n=len(answers))
    writer.commit(RunRecord(ident, "finished", dict(PROVENANCE), {"exact_match": summary}, cost("zero_shot")))
    return exp_dir / ident.run_id


def test_a_runs_answers_below_the_threshold_are_rejected(task, tmp_path):
    tr1, tr2, tr3 = task.splits["train"]
    run_dir = write_answers(
        tmp_path / "exp",
        [
            (tr1, "wrong one", {"exact_match": 0.0, "rouge_l": 0.9}),
            (tr2, "close", {"exact_match": 0.5, "rouge_l": 0.95}),  # at the threshold: not below it
            (tr3, "wrong three", {"exact_match": 0.25, "rouge_l": 1.0}),
            (tr2, "fine", {"exact_match": 1.0, "rouge_l": 1.0}),
        ],
    )
    pairs = read_run_pairs(run_dir, task, "exact_match", 0.5)
    assert [(p.example, p.chosen, p.rejected, p.rejected_score) for p in pairs] == [
        (tr1, "report tr1", "wrong one", 0.0),
        (tr3, "report tr3", "wrong three", 0.25),
    ]
    assert [p.origin for p in pairs] == ["predictions.jsonl, line 1", "predictions.jsonl, line 3"]
    assert_train_only(pairs, task)
    assert [p.example.id for p in read_run_pairs(run_dir, task, "rouge_l", 0.95)] == ["tr1"]


def test_a_run_that_answered_the_test_split_is_refused(task, tmp_path):
    tr1 = task.splits["train"][0]
    te1 = task.splits["test"][0]
    run_dir = write_answers(tmp_path / "exp", [(tr1, "a", {"exact_match": 0.0}), (te1, "b", {"exact_match": 0.0})])
    with pytest.raises(DataError) as err:
        read_run_pairs(run_dir, task, "exact_match", 0.5)
    message = str(err.value)
    assert "predictions.jsonl, line 2, field 'id': 'te1' is a test example" in message
    assert "the run answered the test split" in message
    assert "tune.split=train" in message


def test_a_run_answer_the_task_lacks_or_unscored_is_located(task, tmp_path):
    stranger = Example(id="zz", input="x", reference="y")
    run_dir = write_answers(tmp_path / "a", [(stranger, "a", {"exact_match": 0.0})])
    with pytest.raises(DataError, match=r"predictions.jsonl, line 1, field 'id': unknown id 'zz'"):
        read_run_pairs(run_dir, task, "exact_match", 0.5)
    tr1, tr2 = task.splits["train"][:2]
    run_dir = write_answers(tmp_path / "b", [(tr1, "a", {"exact_match": 0.0}), (tr2, "b", {"rouge_l": 0.0})])
    with pytest.raises(DataError, match=r"line 2, field 'scores': no score on metric 'exact_match'.*rouge_l"):
        read_run_pairs(run_dir, task, "exact_match", 0.5)


def test_an_unfinished_run_is_refused(task, tmp_path):
    failed = write_failed_run(tmp_path / "exp", "zero_shot", stage="generate")
    with pytest.raises(
        ConfigError, match=rf"config `{KEY}.run`: .* failed at stage 'generate'; it did not finish.*tune.split=train"
    ):
        read_run_pairs(failed, task, "exact_match", 0.5)
    with pytest.raises(ConfigError, match=rf"config `{KEY}.run`: .* holds no run record"):
        read_run_pairs(tmp_path / "nowhere", task, "exact_match", 0.5)


def test_the_reference_itself_is_no_pair_but_an_empty_answer_is_a_mistake(task, tmp_path):
    tr1, tr2, tr3 = task.splits["train"]
    scores = {"exact_match": 0.0}
    run_dir = write_answers(tmp_path / "exp", [(tr1, "  ", scores), (tr2, "report tr2 ", scores), (tr3, "x", scores)])
    assert [(p.example.id, p.rejected) for p in read_run_pairs(run_dir, task, "exact_match", 0.5)] == [
        ("tr1", "  "),
        ("tr3", "x"),
    ]
