"""Floors and ceilings beside the arms: the majority answer (no model runs) and the oracle context
(the gold passages in the prompt, retrieval's upper bound)."""

from collections import Counter

from ragft.adapt.majority import majority_answer
from ragft.eval.text import report_sections
from ragft.recipe import run_experiment_arm
from ragft.record.run import read_predictions
from tests.conftest import record_of


def test_structured_references_get_the_most_frequent_value_of_each_line():
    references = ["A: x\nB: 1", "A: y\nB: 2", "A: x\nB: 2", "A: z\nB: 2"]
    assert majority_answer(references) == "A: x\nB: 2"


def test_free_text_gets_the_most_frequent_reference_and_ties_go_to_the_first_seen():
    assert majority_answer(["yes", "no", "no", "maybe"]) == "no"
    assert majority_answer(["b", "a"]) == "b"


def test_the_clinic_majority_report_holds_each_lines_most_frequent_training_value(clinic):
    train = [n["report"] for n in clinic.split(clinic.notes, "train")]
    answer = report_sections(majority_answer(train))
    for header, value in answer.items():
        counts = Counter(report_sections(r)[header] for r in train)
        assert counts[value] == max(counts.values()), header
    assert list(answer) == list(report_sections(train[0]))  # every report has the same five lines


def test_the_majority_arm_answers_every_example_alike_without_a_model(smoke_cfg):
    run_dir = run_experiment_arm(smoke_cfg("arm=majority", "task.generation.max_new_tokens=64"))
    record = record_of(run_dir)
    predictions = read_predictions(run_dir)
    assert record.identity.arm == "majority"
    assert record.cost.base_total_params == 0 and record.cost.training is None
    assert len({p["output"] for p in predictions}) == 1  # one answer, whatever the note
    assert set(report_sections(predictions[0]["output"])) == {
        "PATIENT",
        "DIAGNOSIS",
        "TREATMENT",
        "FOLLOW-UP",
        "REFERRAL",
    }


def test_the_oracle_context_carries_each_examples_gold_passages_and_builds_no_retriever(smoke_cfg, clinic):
    run_dir = run_experiment_arm(smoke_cfg("arm=oracle_rag"))
    record = record_of(run_dir)
    protocols = clinic.protocols[1]
    for p in read_predictions(run_dir):
        assert p["retrieved"] == p["gold_passages"]
        assert all(protocols[doc] in p["prompt"] for doc in p["gold_passages"])
    assert record.cost.retrieval is None  # nothing retrieved, nothing indexed
    assert "recall_at_k" not in record.scores  # a perfect "retriever" by construction: not scored as one
