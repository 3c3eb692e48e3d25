import numpy as np
import pytest

from ragft.errors import ConfigError
from ragft.eval.ranking import recall_at_k
from ragft.eval.registry import METRICS, mean_with_ci, score_predictions
from ragft.eval.text import accuracy, bleu, chrf, exact_match, field_accuracy, report_sections, token_f1
from ragft.types import Example
from tests.conftest import compose_config
from tests.conftest import prediction as pred

SECTIONS = {"age": "PATIENT", "sex": "PATIENT", "drug": "TREATMENT", "dose": "TREATMENT", "follow_up": "FOLLOW-UP"}
FACTS = {"age": "8", "sex": "female", "drug": "Cardivex", "dose": "5 mg once daily", "follow_up": "6 weeks"}


def rouge(name: str, output: str, reference: str) -> float:
    return METRICS[name].fn(pred(output, reference))[name]


def test_rouge_on_known_strings():
    # LCS "the cat on the mat" = 5 of 6 tokens each side -> P = R = F = 5/6
    assert rouge("rouge_l", "the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # unigrams: 5 of 6 shared; bigrams: "the cat", "on the", "the mat" = 3 of 5
    assert rouge("rouge_1", "the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    assert rouge("rouge_2", "the cat sat on the mat", "the cat lay on the mat") == pytest.approx(3 / 5)
    assert rouge("rouge_l", "abc", "abc") == 1.0


def test_bleu_and_chrf_from_sacrebleu_scaled_to_one():
    import sacrebleu

    assert bleu(pred("the cat sat on the mat", "the cat sat on the mat"))["bleu"] == pytest.approx(1.0)
    hyp, ref = "the cat sat on a mat", "the cat sat on the mat"
    assert bleu(pred(hyp, ref))["bleu"] == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref]).score / 100)
    assert 0 < chrf(pred(hyp, ref))["chrf"] < 1
    assert chrf(pred("xyz", "abc"))["chrf"] == 0.0


def test_label_accuracy_takes_the_first_label_named():
    labels = ["yes", "no", "maybe"]
    assert accuracy(pred("Yes, the trial shows it.", "yes"), labels=labels)["accuracy"] == 1.0
    assert accuracy(pred("No. Yes would overstate it.", "yes"), labels=labels)["accuracy"] == 0.0
    assert accuracy(pred("It is unclear.", "maybe"), labels=labels)["accuracy"] == 0.0
    with pytest.raises(ValueError, match="not one of the labels"):
        accuracy(pred("yes", "perhaps"), labels=labels)


def test_exact_match_normalises_case_punctuation_and_articles():
    assert exact_match(pred("The Cardivex.", "cardivex"))["exact_match"] == 1.0
    assert exact_match(pred("Cardivex 10 mg", "cardivex"))["exact_match"] == 0.0


def test_token_f1_on_known_overlap():
    # predicted {10, mg, daily}, reference {10, mg, once, daily}: P = 1, R = 3/4 -> F1 = 6/7
    assert token_f1(pred("10 mg daily", "10 mg once daily"))["token_f1"] == pytest.approx(6 / 7)
    assert token_f1(pred("nothing", "10 mg"))["token_f1"] == 0.0


def test_field_accuracy_needs_each_fact_in_its_section():
    output = "PATIENT: 8 y, male\nDIAGNOSIS: x\nTREATMENT: Cardivex 5 mg once daily\nFOLLOW-UP: 16 weeks"
    scores = field_accuracy(pred(output, facts=FACTS), sections=SECTIONS, protocol_fields=["drug", "dose", "follow_up"])
    # age right; "male" is not "female"; drug and dose right; "16 weeks" is not "6 weeks"
    assert scores["field/age"] == 1.0 and scores["field/sex"] == 0.0
    assert scores["field/drug"] == 1.0 and scores["field/dose"] == 1.0 and scores["field/follow_up"] == 0.0
    assert scores["field_accuracy"] == pytest.approx(3 / 5)
    assert scores["protocol_fact_accuracy"] == pytest.approx(2 / 3)
    assert scores["format_compliance"] == 1.0


def test_a_fact_in_the_wrong_section_does_not_count():
    output = "PATIENT: Cardivex\nTREATMENT: 8 y\nFOLLOW-UP: none"
    scores = field_accuracy(pred(output, facts=FACTS), sections=SECTIONS)
    assert scores["field/drug"] == 0.0 and scores["field/age"] == 0.0


def test_format_compliance_requires_all_sections_in_order():
    swapped = "TREATMENT: a\nPATIENT: b\nFOLLOW-UP: c"
    assert field_accuracy(pred(swapped, facts=FACTS), sections=SECTIONS)["format_compliance"] == 0.0
    assert field_accuracy(pred("free text", facts=FACTS), sections=SECTIONS)["format_compliance"] == 0.0


def test_field_accuracy_names_a_fact_the_example_lacks():
    with pytest.raises(ConfigError, match="field_accuracy.sections.*referral"):
        field_accuracy(pred("x", facts=FACTS), sections={"referral": "REFERRAL"})


def test_report_sections_parses_headers_only():
    assert report_sections("PATIENT: 8 y\nnote: lower case\nFOLLOW-UP: 2 weeks") == {
        "PATIENT": "8 y",
        "FOLLOW-UP": "2 weeks",
    }


def test_recall_at_k_only_applies_where_the_arm_retrieves():
    assert recall_at_k(pred("", gold=["a", "b"], retrieved=["b", "c"]))["recall_at_k"] == 0.5
    assert recall_at_k(pred("", gold=["a"], retrieved=())) == {"recall_at_k": 0.0}  # retrieved nothing
    assert recall_at_k(pred("", gold=["a"])) == {}  # does not retrieve


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small = mean_with_ci(rng.binomial(1, 0.5, 40).tolist())
    large = mean_with_ci(rng.binomial(1, 0.5, 4000).tolist())
    for agg in (small, large):
        assert agg["ci_low"] <= agg["mean"] <= agg["ci_high"]
    assert large["ci_high"] - large["ci_low"] < small["ci_high"] - small["ci_low"]


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = sum(
        agg["ci_low"] <= 0.3 <= agg["ci_high"]
        for agg in (mean_with_ci(rng.binomial(1, 0.3, 100).tolist(), seed=i, resamples=500) for i in range(200))
    )
    assert 0.88 <= covered / 200 <= 0.99


def test_constant_scores_have_a_zero_width_interval():
    assert mean_with_ci([1.0, 1.0, 1.0]) == {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 3}


def test_score_predictions_fills_per_example_scores_and_aggregates():
    predictions = [pred("a", "a"), pred("b", "c")]
    aggregates = score_predictions(predictions, {"exact_match": {}})
    assert [p.scores["exact_match"] for p in predictions] == [1.0, 0.0]
    assert aggregates["exact_match"].mean == 0.5 and aggregates["exact_match"].n == 2


def test_unknown_metric_is_a_config_error_listing_the_known_ones():
    with pytest.raises(ConfigError, match=r"task.metrics.*bleurt.*registered.*rouge_l"):
        score_predictions([pred("a", "a")], {"bleurt": {}})


def test_non_finite_scores_are_left_out_and_each_score_keeps_its_metrics_direction(monkeypatch, caplog):
    from ragft.eval.registry import Metric

    scores = iter([{"loss": float("nan")}, {"loss": 2.0}])
    monkeypatch.setitem(METRICS, "toy_loss", Metric("toy_loss", lambda p: next(scores), higher_is_better=False))
    predictions = [pred("a"), pred("b")]
    aggregates = score_predictions(predictions, {"toy_loss": {}, "exact_match": {}})
    assert "loss" not in predictions[0].scores and "non-finite" in caplog.text
    assert aggregates["loss"].n == 1 and aggregates["loss"].higher_is_better is False
    assert aggregates["exact_match"].higher_is_better is True


def test_a_task_must_select_a_metric():
    from ragft.eval.registry import check_metrics

    with pytest.raises(ConfigError, match="task.metrics"):
        check_metrics({}, Example(id="x", input="", reference=""))


def test_contains_reference_accepts_the_answer_inside_a_sentence_only_as_whole_words():
    from ragft.eval.text import contains_reference

    def score(output: str, reference: str) -> float:
        return contains_reference(pred(output, reference))["contains_reference"]

    assert score("The answer is: 15 mg before breakfast.", "15 mg before breakfast") == 1.0
    assert score("115 mg before breakfast", "15 mg before breakfast") == 0.0  # not a whole-word match
    assert score("Cardivex", "Vasoren") == 0.0 and score("anything", "") == 0.0


def test_the_shipped_gold_reports_score_full_marks_and_another_protocols_report_does_not(clinic):
    """With the task's own settings: every gold test report is perfect on every field, and the gold
    report of a note under another protocol misses that protocol's facts."""
    from omegaconf import OmegaConf

    settings = OmegaConf.to_container(compose_config().task.metrics.field_accuracy)
    notes = clinic.split(clinic.notes, "test")
    for note in notes:
        scores = field_accuracy(pred(note["report"], note["report"], facts=note["fields"]), **settings)
        assert [scores[k] for k in ("field_accuracy", "protocol_fact_accuracy", "format_compliance")] == [1.0] * 3
        assert rouge("rouge_l", note["report"], note["report"]) == 1.0
        other = next(n for n in notes if n["gold_passages"] != note["gold_passages"])
        swapped = field_accuracy(pred(other["report"], note["report"], facts=note["fields"]), **settings)
        assert swapped["protocol_fact_accuracy"] < 1.0 and swapped["format_compliance"] == 1.0, note["id"]
