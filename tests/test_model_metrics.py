"""Groundedness, embedding similarity and the model-as-judge, on known inputs and tiny models."""

import pytest
from omegaconf import OmegaConf

from ragft.errors import ConfigError
from ragft.eval.model import EvaluationModels, _grade
from ragft.eval.registry import check_metrics, score_predictions
from ragft.eval.text import groundedness
from ragft.types import Example, Prediction
from tests.conftest import compose_config, prediction

PASSAGE = "Hypertension protocol: Cardivex 10 mg once daily; follow-up after 2 weeks."


def answer(output: str, reference: str = "ref", passages=(PASSAGE,), note: str = "") -> Prediction:
    """An answer given `passages` (by default, one hypertension protocol)."""
    return prediction(output, reference, passages=passages, note=note)


def test_groundedness_is_the_share_of_content_words_found_in_the_passages():
    # content words: cardivex, 10, mg, daily (once is a stop word) -> all in the passage
    assert groundedness(answer("Cardivex 10 mg once daily"))["groundedness"] == 1.0
    # cardivex, 20, mg, daily: "20" is in no passage -> 3/4
    assert groundedness(answer("Cardivex 20 mg daily"))["groundedness"] == pytest.approx(3 / 4)
    # a drug named nowhere in the evidence
    assert groundedness(answer("Zorbatin"))["groundedness"] == 0.0


def test_groundedness_counts_the_input_only_when_asked_and_skips_ignored_words():
    note_answer = answer("TREATMENT: Cardivex, patient aged 8", note="8-year-old seen today, aged 8")
    # content words: treatment, cardivex, patient, aged, 8
    assert groundedness(note_answer)["groundedness"] == pytest.approx(3 / 5)  # cardivex, aged, 8
    assert groundedness(note_answer, include_input=False)["groundedness"] == pytest.approx(1 / 5)
    ignored = groundedness(note_answer, ignore=["TREATMENT", "patient"])["groundedness"]
    assert ignored == 1.0


def test_groundedness_splits_words_at_punctuation():
    # "8-year-old" in the note supports "8" and "old"; "10mg" is one token, not "10" + "mg"
    assert groundedness(answer("8 year old", note="an 8-year-old girl"))["groundedness"] == 1.0
    assert groundedness(answer("Cardivex 10mg"))["groundedness"] == pytest.approx(1 / 2)


def test_the_shipped_gold_reports_are_fully_grounded_in_their_protocol_and_note(clinic):
    params = OmegaConf.to_container(compose_config("task=medical_reports").task.metrics.groundedness)
    protocols = clinic.protocols[1]
    notes = clinic.split(clinic.notes, "test")
    for note in notes:
        gold = answer(note["report"], passages=[protocols[g] for g in note["gold_passages"]], note=note["note"])
        assert groundedness(gold, **params)["groundedness"] == 1.0, note["id"]
    first = notes[0]
    invented = first["report"].replace("TREATMENT: ", "TREATMENT: Zorbatin ")
    wrong_drug = answer(invented, passages=[protocols[g] for g in first["gold_passages"]], note=first["note"])
    assert groundedness(wrong_drug, **params)["groundedness"] < 1.0


def test_groundedness_applies_only_to_answers_given_passages():
    assert groundedness(answer("Cardivex", passages=())) == {}
    assert groundedness(answer("the and of")) == {}  # nothing but stop words


@pytest.fixture(scope="module")
def tiny_models() -> EvaluationModels:
    cfg = compose_config("+debug=smoke", "generator@evaluation.judge=tiny")
    return EvaluationModels(cfg.evaluation)


def test_embedding_similarity_is_one_for_the_reference_itself_and_lower_otherwise(tiny_models):
    predictions = [
        answer("PATIENT: 8 y, male", reference="PATIENT: 8 y, male"),
        answer("completely unrelated words here", reference="PATIENT: 8 y, male"),
    ]
    aggregate = score_predictions(predictions, {"embedding_similarity": {}}, models=tiny_models)
    same, other = (p.scores["embedding_similarity"] for p in predictions)
    assert same == pytest.approx(1.0, abs=1e-5) and 0.0 <= other < same
    assert aggregate["embedding_similarity"].n == 2


def test_judge_grades_are_parsed_and_scaled():
    assert _grade("4") == {"llm_judge": 0.75, "llm_judge_parsed": 1.0}
    assert _grade("Score: 1/5") == {"llm_judge": 0.0, "llm_judge_parsed": 1.0}
    assert _grade("excellent") == {"llm_judge_parsed": 0.0}
    assert _grade("10/10") == {"llm_judge_parsed": 0.0} and _grade("1.5") == {"llm_judge_parsed": 0.0}


def replying(models: EvaluationModels, reply_for: dict[str, str]):  # noqa: ANN201 - a removable hook handle
    """Make the judge model's next token the one `reply_for` names for the first of its keys found in the
    prompt: a forward hook lifts that token's logit at the last position. Prompts, generation, decoding
    and grading all run as they are."""
    tokenizer, model = models.judge.tokenizer, models.judge.model

    def lift(module, args, kwargs, output):  # noqa: ANN001, ANN202
        ids = kwargs.get("input_ids", args[0] if args else None)
        for row, prompt in enumerate(tokenizer.batch_decode(ids, skip_special_tokens=True)):
            reply = next(reply for key, reply in reply_for.items() if key in prompt)
            output.logits[row, -1, tokenizer.convert_tokens_to_ids(reply)] += 1e4
        return output

    return model.register_forward_hook(lift, with_kwargs=True)


def test_each_prediction_gets_the_grade_the_configured_judge_replied_for_it(tiny_models):
    outputs = {"Cardivex": "5", "no idea": "2", "Cardivex 10 mg once daily, follow-up after 2 weeks": "4", "um": "x"}
    reply_for = {f"Answer to rate: {output}\n": reply for output, reply in outputs.items()}  # the rubric's last line
    predictions = [answer(output, reference="Cardivex") for output in outputs]  # unequal lengths: batched out of order
    handle = replying(tiny_models, reply_for)
    try:
        score_predictions(predictions, {"llm_judge": {"max_new_tokens": 1}}, models=tiny_models)
    finally:
        handle.remove()
    assert [p.scores.get("llm_judge") for p in predictions] == [1.0, 0.25, 0.75, None]  # (grade - 1) / 4
    assert [p.scores["llm_judge_parsed"] for p in predictions] == [1.0, 1.0, 1.0, 0.0]  # "x" is no grade


def test_judge_without_a_configured_model_fails_before_any_work():
    models = EvaluationModels(compose_config("+debug=smoke").evaluation)
    example = Example(id="e1", input="q", reference="a")
    with pytest.raises(ConfigError, match=r"evaluation.judge.*generator@evaluation.judge"):
        check_metrics({"llm_judge": {}}, example, models)


def test_judge_rubric_with_an_unknown_placeholder_is_a_config_error(tiny_models):
    example = Example(id="e1", input="q", reference="a")
    with pytest.raises(ConfigError, match=r"task.metrics.llm_judge.*rubric"):
        check_metrics({"llm_judge": {"rubric": "Grade {answer}"}}, example, tiny_models)


def test_embedding_similarity_needs_an_embedder():
    models = EvaluationModels(OmegaConf.create({"embedder": None}))
    with pytest.raises(ConfigError, match="evaluation.embedder"):
        check_metrics({"embedding_similarity": {}}, Example(id="e1", input="q", reference="a"), models)


def test_the_judge_sees_the_rubric_filled_in_and_its_replies_become_grades(tiny_models, monkeypatch):
    import ragft.models.generation
    from ragft.models.generation import Generation

    seen = {}

    def judge_replies(generator, encoded, ids, max_new_tokens, **kwargs):
        seen["prompts"] = [generator.tokenizer.decode(e) for e in encoded]
        return [Generation(text, 0, 0) for text in ("5", "Grade: 2", "none")]

    monkeypatch.setattr(ragft.models.generation, "generate", judge_replies)
    predictions = [answer(f"output {i}", reference=f"reference {i}") for i in range(3)]
    rubric = "Q: {input} | R: {reference} | A: {output}"
    score_predictions(predictions, {"llm_judge": {"rubric": rubric}}, models=tiny_models)
    assert all(f"R: reference {i} | A: output {i}" in prompt for i, prompt in enumerate(seen["prompts"]))
    assert [p.scores.get("llm_judge") for p in predictions] == [1.0, 0.25, None]
    assert [p.scores["llm_judge_parsed"] for p in predictions] == [1.0, 1.0, 0.0]
