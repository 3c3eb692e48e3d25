"""Leakage checks on constructed data: exact and near duplicates are found, distinct texts are not; on the
shipped clinic task the reference-level checks are computed and recorded where the report reads them."""

import json

import pytest

from ragft.data.leakage import (
    INFORMATIONAL,
    LeakageError,
    check_leakage,
    corpus_test_overlap,
    ngrams,
    reference_line_overlap,
    train_test_overlap,
    train_test_reference_overlap,
)
from ragft.data.loading import task_from_config
from ragft.errors import ConfigError
from ragft.record.run import RunRecord
from ragft.report.groups import LoadedRun, RunGroup
from ragft.report.tables import leakage_table
from ragft.types import Example, Passage, TaskData
from tests.conftest import compose_config, run_expecting
from tests.fake_runs import PROVENANCE, identity

SETTINGS = {"ngram": 3, "near_threshold": 0.8, "min_reference_words": 8, "fail": False}
LONG = "eight year old male seen today with occasional dizziness and a reading of 168 over 102 judged severe"


def test_ngrams_are_normalised_word_ngrams():
    assert ngrams("The cat, sat ON the mat!", 3) == {"cat sat on", "sat on mat"}
    assert ngrams("Two words", 3) == {"two words"}
    assert ngrams("", 3) == set()


def test_train_test_overlap_finds_exact_and_near_duplicates_only():
    train = [("t1", LONG), ("t2", LONG.replace("severe", "mild")), ("t3", "asthma in a 40 year old woman")]
    test = [
        ("x1", LONG.upper() + "."),  # exact after normalisation
        ("x2", LONG.replace("dizziness", "headache")),  # 1 of 17 words changed: 12 of 18 trigrams shared
        ("x3", "a completely different note about a broken wrist after a fall"),
    ]
    result = train_test_overlap(train, test, ngram=3, near_threshold=0.6)
    assert (result["checked"], result["exact"], result["near"]) == (3, 1, 1)
    assert result["rate"] == pytest.approx(2 / 3)
    by_test = {leak["test"]: leak for leak in result["examples"]}
    assert by_test["x1"]["kind"] == "exact" and by_test["x1"]["similarity"] == 1.0
    assert by_test["x2"]["kind"] == "near" and by_test["x2"]["train"] == "t1"
    assert by_test["x2"]["similarity"] == pytest.approx(12 / 18, abs=1e-4)
    assert "x3" not in by_test


def test_corpus_test_overlap_checks_long_references_only():
    reference = "PATIENT: 8 y, male. DIAGNOSIS: hypertension, severe. TREATMENT: Cardivex 5 mg once daily."
    corpus = [
        ("p1", "Example report. " + reference + " End of example."),  # the answer key, verbatim
        ("p2", "Hypertension protocol: Cardivex 10 mg once daily for adults."),
    ]
    references = [("x1", reference), ("x2", "Cardivex"), ("x3", "a long reference that no passage holds at all here")]
    result = corpus_test_overlap(corpus, references, ngram=3, near_threshold=0.8, min_reference_words=8)
    assert result["too_short"] == 1 and result["checked"] == 2
    assert result["exact"] == 1 and result["near"] == 0
    assert result["examples"][0] == {"test": "x1", "passage": "p1", "similarity": 1.0, "kind": "exact"}


def test_verbatim_means_whole_words_and_texts_sharing_nothing_never_leak():
    reference = "take 5 mg once daily with food and review after two weeks"
    corpus = [("p1", "take 15 mg once daily with food and review after two weeks")]  # not the same dose
    result = corpus_test_overlap(corpus, [("x1", reference)], ngram=3, near_threshold=0.95, min_reference_words=8)
    assert result["exact"] == 0 and result["near"] == 0
    unrelated = train_test_overlap([("t1", "alpha beta gamma")], [("x1", "delta epsilon zeta")], 3, 0.01)
    assert unrelated["near"] == 0 and unrelated["max_similarity"] == 0.0


@pytest.mark.parametrize("key, value", [("near_threshold", 0.0), ("near_threshold", 1.5), ("ngram", 0)])
def test_settings_out_of_range_are_config_errors(key, value):
    with pytest.raises(ConfigError, match=f"leakage.{key}"):
        check_leakage(task_with_leak(), {**SETTINGS, key: value})


def task_with_leak() -> TaskData:
    train = [Example(id="tr1", input=LONG, reference="r")]
    test = [Example(id="te1", input=LONG, reference="r"), Example(id="te2", input="different text", reference="r")]
    return TaskData(name="toy", splits={"train": train, "test": test}, corpus=[Passage("p1", "unrelated")])


def test_check_leakage_records_or_fails_as_configured():
    report = check_leakage(task_with_leak(), SETTINGS)
    assert report["train_test"]["exact"] == 1 and report["corpus_test"]["checked"] == 0
    json.dumps(report)  # goes into leakage.json as it is
    with pytest.raises(LeakageError, match=r"(?s)train_test: 1 exact.*te1~tr1.*leakage.fail=false"):
        check_leakage(task_with_leak(), {**SETTINGS, "fail": True})


def test_a_run_with_leakage_fail_stops_before_writing_anything(smoke_cfg, tmp_path):
    cfg = smoke_cfg("leakage.fail=true", "leakage.near_threshold=0.05")  # the notes share phrasing: most "leak"
    n = cfg.task.limits.test
    run_expecting(
        LeakageError,
        rf"leakage.fail is true.*\n  train_test: 0 exact and [1-9]\d* near duplicates of {n}",
        cfg,
        tmp_path,
    )


REPORT = (
    "PATIENT: 8 y, male\nDIAGNOSIS: hypertension, moderate\nTREATMENT: Cardivex 5 mg once daily\nFOLLOW-UP: 6 weeks"
)


def test_a_test_reference_identical_to_a_train_reference_is_an_exact_leak_and_an_unrelated_one_is_none():
    train = [("t1", REPORT), ("t2", "an unrelated training answer about a broken wrist after a fall")]
    test = [
        ("x1", REPORT.replace("\n", " \n").upper()),  # the same reference after normalisation
        ("x2", "a completely different reference that shares no words with any training one"),
        ("x3", "too short"),
    ]
    result = train_test_reference_overlap(train, test, ngram=3, near_threshold=0.8, min_reference_words=8)
    assert (result["checked"], result["too_short"], result["exact"], result["near"]) == (2, 1, 1, 0)
    assert result["rate"] == pytest.approx(1 / 2)
    assert result["examples"] == [{"test": "x1", "train": "t1", "similarity": 1.0, "kind": "exact"}]


def test_reference_lines_found_in_training_references_are_counted_per_line_position():
    train = [("t1", REPORT), ("t2", REPORT.replace("6 weeks", "2 weeks"))]
    other_drug = REPORT.replace("Cardivex", "Vasoren")  # line 3 is new, the other three lines are not
    unrelated = "PATIENT: 40 y, female\nDIAGNOSIS: migraine, mild\nTREATMENT: Neurolexa\nFOLLOW-UP: 9 weeks"
    result = reference_line_overlap(train, [("x1", other_drug), ("x2", unrelated)])
    assert (result["checked"], result["exact"], result["near"]) == (8, 3, 0)
    assert result["rate"] == pytest.approx(3 / 8)
    assert result["by_line"] == {"1": 0.5, "2": 0.5, "3": 0.0, "4": 0.5}
    assert [x["test"] for x in result["examples"]] == ["x1 line 1", "x1 line 2", "x1 line 4"]
    assert all(x["train"] == "t1" for x in result["examples"])  # the first train reference holding the line


def test_shared_reference_lines_are_recorded_but_do_not_stop_a_run():
    """Templated references share lines by design: with `fail`, only whole-reference leaks stop a run."""
    first = "PATIENT: 8 y, male\nDIAGNOSIS: asthma, mild in a long enough reference here"
    second = "PATIENT: 8 y, male\nDIAGNOSIS: eczema, severe and another long stretch of words"
    train = [Example(id="tr1", input="note one about something", reference=first)]
    test = [Example(id="te1", input="a different note entirely", reference=second)]
    task = TaskData(name="toy", splits={"train": train, "test": test}, corpus=[])
    report = check_leakage(task, {**SETTINGS, "fail": True})  # no LeakageError
    assert set(report) >= INFORMATIONAL and report["train_test_reference_lines"]["exact"] == 1
    one_line = TaskData("toy", {"train": train, "test": [Example(id="te1", input="x", reference="y")]}, [])
    assert "train_test_reference_lines" not in check_leakage(one_line, SETTINGS)  # lines of one-line answers
    same = TaskData("toy", {"train": train, "test": [Example(id="te1", input="x", reference=first)]}, [])
    with pytest.raises(LeakageError, match=r"train_test_reference: 1 exact .*te1~tr1"):
        check_leakage(same, {**SETTINGS, "fail": True})


@pytest.fixture(scope="module")
def shipped_leakage() -> dict:
    cfg = compose_config("task=medical_reports")
    return check_leakage(task_from_config(cfg.task), cfg.leakage)


def test_the_shipped_reports_reference_leakage_is_what_the_notes_file_shows(clinic, shipped_leakage):
    train = clinic.split(clinic.notes, "train")
    test = clinic.split(clinic.notes, "test")
    train_reports = {n["report"] for n in train}
    train_lines = {line for n in train for line in n["report"].splitlines()}
    test_lines = [line for n in test for line in n["report"].splitlines()]
    references = shipped_leakage["train_test_reference"]
    assert references["checked"] == len(test)
    assert references["exact"] == sum(n["report"] in train_reports for n in test)
    lines = shipped_leakage["train_test_reference_lines"]
    assert lines["checked"] == len(test_lines)
    assert lines["exact"] == sum(line in train_lines for line in test_lines)
    assert 0 < lines["rate"] < 1  # seen notes share lines with training reports, unseen ones hold new lines
    json.dumps(shipped_leakage)


def test_the_reference_checks_reach_the_run_table_and_the_reports_leakage_table(shipped_leakage, tmp_path):
    record = RunRecord(identity(tmp_path / "exp", "rag", task="medical_reports"), "finished", dict(PROVENANCE))
    record.leakage = shipped_leakage
    row = record.table_row()
    for check, summary in shipped_leakage.items():
        assert row[f"leak_{check}_rate"] == summary["rate"]
    table = leakage_table([RunGroup("rag", [LoadedRun(record)])])
    assert {"medical_reports: train/test/reference", "medical_reports: train/test/reference/lines"} <= set(table.index)
