"""Leakage checks on constructed data: exact and near duplicates are found, distinct texts are not."""

import json

import pytest

from ragft.data.leakage import LeakageError, check_leakage, corpus_test_overlap, ngrams, train_test_overlap
from ragft.errors import ConfigError
from ragft.types import Example, Passage, TaskData
from tests.conftest import run_expecting

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
    cfg = smoke_cfg("leakage.fail=true", "leakage.near_threshold=0.05")  # the notes share phrasing: all "leak"
    n = cfg.task.limits.test
    run_expecting(
        LeakageError, rf"leakage.fail is true.*\n  train_test: 0 exact and {n} near duplicates of {n}", cfg, tmp_path
    )
