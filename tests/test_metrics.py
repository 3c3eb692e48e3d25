import numpy as np
import pytest

from ragft.errors import ConfigError
from ragft.eval.ranking import recall_at_k
from ragft.eval.registry import METRICS, mean_with_ci, score_predictions
from ragft.eval.text import accuracy, bleu, chrf, exact_match, field_accuracy, report_sections, token_f1
from ragft.types import Example, TaskData
from tests.conftest import compose_config
from tests.conftest import prediction as pred

SECTIONS = {"age": "PATIENT", "sex": "PATIENT", "drug": "TREATMENT", "dose": "TREATMENT", "follow_up": "FOLLOW-UP"}
FACTS = {"age": "8", "sex": "female", "drug": "Cardivex", "dose": "5 mg once daily", "follow_up": "6 weeks"}
OTHER = {"age": "80", "sex": "male", "drug": "Vasoren", "dose": "10 mg once daily", "follow_up": "16 weeks"}


def toy_task(*facts: dict[str, str]) -> TaskData:
    """A task whose examples hold `facts` (FACTS and OTHER by default): the values each field can take."""
    examples = [Example(id=f"e{i}", input="", reference="", facts=f) for i, f in enumerate(facts or (FACTS, OTHER))]
    return TaskData("toy", {"train": examples[1:], "test": examples[:1]}, [])


TOY = toy_task()


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
    fields = ["drug", "dose", "follow_up"]
    scores = field_accuracy(pred(output, facts=FACTS), sections=SECTIONS, protocol_fields=fields, task=TOY)
    # age right; "male" is not "female"; drug and dose right; "16 weeks" is not "6 weeks"
    assert scores["field/age"] == 1.0 and scores["field/sex"] == 0.0
    assert scores["field/drug"] == 1.0 and scores["field/dose"] == 1.0 and scores["field/follow_up"] == 0.0
    assert scores["field_accuracy"] == pytest.approx(3 / 5)
    assert scores["protocol_fact_accuracy"] == pytest.approx(2 / 3)
    assert scores["format_compliance"] == 1.0


def test_a_fact_in_the_wrong_section_does_not_count():
    output = "PATIENT: Cardivex\nTREATMENT: 8 y\nFOLLOW-UP: none"
    scores = field_accuracy(pred(output, facts=FACTS), sections=SECTIONS, task=TOY)
    assert scores["field/drug"] == 0.0 and scores["field/age"] == 0.0


def test_format_compliance_requires_all_sections_in_order():
    swapped = "TREATMENT: a\nPATIENT: b\nFOLLOW-UP: c"
    assert field_accuracy(pred(swapped, facts=FACTS), sections=SECTIONS, task=TOY)["format_compliance"] == 0.0
    assert field_accuracy(pred("free text", facts=FACTS), sections=SECTIONS, task=TOY)["format_compliance"] == 0.0


def test_field_accuracy_names_a_fact_the_example_lacks():
    with pytest.raises(ConfigError, match="field_accuracy.sections.*referral"):
        field_accuracy(pred("x", facts=FACTS), sections={"referral": "REFERRAL"}, task=TOY)


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


# --- strict report scoring: one value per field, hedges get no credit ---------------------------------


def test_a_field_whose_section_names_another_value_of_it_is_wrong_and_hedges():
    hedged = "PATIENT: 8 y, female\nTREATMENT: Cardivex 5 mg once daily\nFOLLOW-UP: 6 weeks / 16 weeks"
    scores = field_accuracy(pred(hedged, facts=FACTS), sections=SECTIONS, task=TOY)
    assert scores["field/follow_up"] == 0.0 and scores["hedge_rate"] == 1.0
    assert scores["field/dose"] == 1.0 and scores["field/age"] == 1.0  # other sections are read on their own
    plain = field_accuracy(pred(hedged.replace(" / 16 weeks", ""), facts=FACTS), sections=SECTIONS, task=TOY)
    assert plain["field_accuracy"] == 1.0 and plain["hedge_rate"] == 0.0


def test_a_section_offering_two_values_of_one_field_states_none_of_its_fields():
    """Two doses of the right drug: the TREATMENT line states no one treatment, so the drug is not
    credited either."""
    output = "PATIENT: 8 y, female\nTREATMENT: Cardivex 5 mg once daily / Cardivex 10 mg once daily"
    scores = field_accuracy(pred(output, facts=FACTS), sections=SECTIONS, task=TOY)
    assert scores["field/drug"] == 0.0 and scores["field/dose"] == 0.0 and scores["hedge_rate"] == 1.0


def test_values_inside_other_values_are_whole_words_and_not_named_inside_a_longer_value():
    facts = [
        {"follow_up": "11 weeks", "diagnosis": "iron deficiency anaemia", "dose": "5 mg once daily"},
        {"follow_up": "1 week", "diagnosis": "anaemia", "dose": "2.5 mg once daily"},
    ]
    task = toy_task(*facts)
    sections = {"follow_up": "FOLLOW-UP", "diagnosis": "DIAGNOSIS", "dose": "TREATMENT"}

    def score(output: str, gold: dict[str, str]) -> dict[str, float]:
        return field_accuracy(pred(output, facts=gold), sections=sections, task=task)

    gold = "DIAGNOSIS: iron deficiency anaemia\nTREATMENT: 5 mg once daily\nFOLLOW-UP: 11 weeks"
    assert score(gold, facts[0])["field_accuracy"] == 1.0 and score(gold, facts[0])["hedge_rate"] == 0.0
    # "anaemia" lies inside "iron deficiency anaemia", "1 week" never matches in "11 weeks", "5 mg" not in "2.5 mg"
    other = score(gold, facts[1])
    assert other["field_accuracy"] == 0.0 and other["hedge_rate"] == 0.0
    assert score("TREATMENT: 2.5 mg once daily", facts[0])["field/dose"] == 0.0
    assert score("FOLLOW-UP: 11 weeks or 1 week", facts[0])["hedge_rate"] == 1.0


def test_a_repeated_header_or_a_line_under_it_is_part_of_its_section():
    def follow_up(output: str) -> dict[str, float]:
        return field_accuracy(pred(output, facts=FACTS), sections={"follow_up": "FOLLOW-UP"}, task=TOY)

    for hedge in ("FOLLOW-UP: 6 weeks\nFOLLOW-UP: 16 weeks", "FOLLOW-UP: 6 weeks\n(16 weeks if worse)"):
        assert follow_up(hedge)["field_accuracy"] == 0.0 and follow_up(hedge)["hedge_rate"] == 1.0
    assert follow_up("FOLLOW-UP: 6 weeks\nFOLLOW-UP: 6 weeks")["field_accuracy"] == 1.0
    assert follow_up("16 weeks\nFOLLOW-UP: 6 weeks\nNOTE: 16 weeks")["field_accuracy"] == 1.0  # outside the section


def test_field_accuracy_needs_the_task_and_score_predictions_passes_it():
    from ragft.eval.registry import check_metrics

    settings = {"sections": SECTIONS}
    with pytest.raises(ValueError, match="task"):
        field_accuracy(pred("x", facts=FACTS), **settings)
    with pytest.raises(TypeError, match="field_accuracy.*task"):
        score_predictions([pred("x", facts=FACTS)], {"field_accuracy": settings})
    output = "PATIENT: 8 y, female\nTREATMENT: Cardivex 5 mg once daily\nFOLLOW-UP: 6 weeks / 16 weeks"
    summaries = score_predictions([pred(output, facts=FACTS)], {"field_accuracy": settings}, task=TOY)
    assert summaries["hedge_rate"].mean == 1.0 and summaries["hedge_rate"].higher_is_better is False
    assert summaries["field_accuracy"].higher_is_better is True
    example = Example(id="x", input="", reference=output, facts=FACTS)
    check_metrics({"field_accuracy": settings}, example)  # without the task: parameters only
    with pytest.raises(ConfigError, match="field_accuracy.*task"):
        check_metrics({"field_accuracy": {**settings, "task": "toy"}}, example, task=TOY)


# --- the shipped task ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    """The shipped report task as configured (every split) and its field_accuracy settings."""
    from omegaconf import OmegaConf

    from ragft.data.loading import task_from_config

    cfg = compose_config()
    return task_from_config(cfg.task), OmegaConf.to_container(cfg.task.metrics.field_accuracy)


def shipped_score(shipped, example: Example, output: str) -> dict[str, float]:
    task, settings = shipped
    return field_accuracy(pred(output, example.reference, facts=example.facts), **settings, task=task)


def hedge(example: Example, train: list[Example], protocol_headers: set[str]) -> str:
    """The gaming output: the note's gold PATIENT and DIAGNOSIS lines, and each protocol line listing
    every value the training reports use for the note's condition."""
    same = [e for e in train if e.facts["diagnosis"] == example.facts["diagnosis"]]
    gold = [line for line in example.reference.splitlines() if line.partition(":")[0] not in protocol_headers]
    listed = [
        f"{header}: " + " / ".join(dict.fromkeys(report_sections(e.reference)[header] for e in same))
        for header in protocol_headers
    ]
    return "\n".join(gold + listed)


def test_the_hedge_over_training_values_gets_no_protocol_credit(shipped):
    task, settings = shipped
    protocol_headers = {settings["sections"][name] for name in settings["protocol_fields"]}
    train, scored, hedging = task.split("train"), [], []
    for note in task.split("test"):
        output = hedge(note, train, protocol_headers)
        scores = shipped_score(shipped, note, output)
        lists = {h: v for h, v in report_sections(output).items() if h in protocol_headers and " / " in v}
        assert scores["hedge_rate"] == float(bool(lists)), (note.id, output)
        for name, header in settings["sections"].items():
            if header in lists:
                assert scores[f"field/{name}"] == 0.0, (note.id, name, output)
        scored.append(scores["protocol_fact_accuracy"])
        hedging.append(scores["hedge_rate"])
    assert np.mean(scored) <= 0.2, np.mean(scored)
    assert max(hedging) == 1.0  # the corpus gives conditions several protocol values to list


def test_every_gold_report_scores_full_marks_and_does_not_hedge(shipped):
    task, _ = shipped
    for note in [e for examples in task.splits.values() for e in examples]:
        scores = shipped_score(shipped, note, note.reference)
        wanted = {"field_accuracy": 1.0, "protocol_fact_accuracy": 1.0, "format_compliance": 1.0, "hedge_rate": 0.0}
        assert {k: scores[k] for k in wanted} == wanted, note.id
        assert rouge("rouge_l", note.reference, note.reference) == 1.0


def test_empty_output_protocol_passage_and_wrong_values_score_below_gold(shipped):
    task, settings = shipped
    passages = {p.id: p.text for p in task.corpus}
    follow_ups = sorted({e.facts["follow_up"] for examples in task.splits.values() for e in examples})
    header = settings["sections"]["follow_up"]
    for note in task.split("test"):
        empty = shipped_score(shipped, note, "")
        assert empty["field_accuracy"] == 0.0 and empty["format_compliance"] == 0.0 and empty["hedge_rate"] == 0.0
        copied = "\n".join(passages[doc] for doc in note.gold_passages)
        assert shipped_score(shipped, note, copied)["field_accuracy"] == 0.0, note.id
        wrong_value = next(v for v in follow_ups if v != note.facts["follow_up"])
        wrong = note.reference.replace(f"{header}: {note.facts['follow_up']}", f"{header}: {wrong_value}")
        scores = shipped_score(shipped, note, wrong)
        assert scores["field/follow_up"] == 0.0 and scores["field_accuracy"] < 1.0 and scores["hedge_rate"] == 0.0
        other = next(e for e in task.split("test") if e.gold_passages != note.gold_passages)
        swapped = shipped_score(shipped, note, other.reference)
        assert swapped["protocol_fact_accuracy"] < 1.0 and swapped["format_compliance"] == 1.0, note.id
