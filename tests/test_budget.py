"""The prompt budget: a prompt over it loses its least similar demonstrations, then its lowest-ranked
passages, then has its last passage trimmed; an input that alone is over it is an error naming the
example, or is cut as `task.truncate` says; what was left out is counted. A word is a token here, so each
expectation is counted from the texts themselves."""

from __future__ import annotations

import re

import pytest

from ragft.context.budget import ELLIPSIS, PromptBudget, prompt_budget
from ragft.context.template import PromptTemplate
from ragft.errors import ConfigError, DataError
from ragft.types import Context, Example, Passage

TEMPLATE = PromptTemplate(instruction="Write the report.", input_format="Note: {input}", passage_format="{text}")


class WordTokenizer:
    """One token per whitespace-separated word, with each word's character span."""

    chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False, **_: object):
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        return {"input_ids": list(range(len(spans))), "offset_mapping": spans}


def words(n: int, stem: str) -> str:
    return " ".join(f"{stem}{i}" for i in range(n))


def size(example: Example, context: Context) -> int:
    return len(TEMPLATE.render(example, context, WordTokenizer()).split())


def fitter(budget: int, truncate: str | None = None) -> PromptBudget:
    return PromptBudget(TEMPLATE, WordTokenizer(), budget, truncate, places={"n1": "notes.jsonl, line 7"})  # type: ignore[arg-type]


NOTE = Example("n1", words(20, "w"), "report")
SHOTS = tuple(Example(f"s{i}", words(30, f"s{i}x"), f"report {i}") for i in range(4))  # most similar first
PASSAGES = tuple(Passage(f"p{i}", words(40, f"p{i}x")) for i in range(3))  # best ranked first


def test_a_prompt_within_the_budget_is_left_as_it_is():
    context = Context(shots=SHOTS, passages=PASSAGES)
    fitted = fitter(size(NOTE, context)).fit([NOTE], [context])
    assert fitted.contexts == [context] and fitted.examples == [NOTE]
    assert fitted.record.prompts_fitted == 0 and len(fitted.encoded[0]) == size(NOTE, context)


def test_the_least_similar_demonstrations_go_first():
    context = Context(shots=SHOTS)
    budget = size(NOTE, Context(shots=SHOTS[:2]))  # room for exactly the two most similar
    fitted = fitter(budget).fit([NOTE], [context])
    assert fitted.contexts[0].shots == SHOTS[:2]
    assert (fitted.record.shots_dropped, fitted.record.prompts_fitted) == (2, 1)
    assert len(fitted.encoded[0]) <= budget and fitted.prompts[0].split()[-20:] == NOTE.input.split()


def test_the_lowest_ranked_passages_go_first_and_the_last_is_trimmed():
    context = Context(passages=PASSAGES)
    budget = size(NOTE, Context(passages=PASSAGES[:2]))
    assert fitter(budget).fit([NOTE], [context]).contexts[0].passages == PASSAGES[:2]
    budget = size(NOTE, Context(passages=PASSAGES[:1])) - 15  # the best passage does not fit whole
    fitted = fitter(budget).fit([NOTE], [context])
    (kept,) = fitted.contexts[0].passages
    assert kept.id == "p0" and kept.text == words(25, "p0x")  # its beginning, as much as fits
    assert len(fitted.encoded[0]) == budget
    assert (fitted.record.passages_dropped, fitted.record.passages_trimmed) == (2, 1)


def test_a_passage_of_which_not_one_token_fits_is_dropped_not_left_empty():
    budget = size(NOTE, Context())  # room for the prompt without any passage
    fitted = fitter(budget).fit([NOTE], [Context(passages=PASSAGES)])
    assert fitted.contexts[0].passages == () and fitted.record.passages_dropped == 3
    assert fitted.record.passages_trimmed == 0


def test_an_input_over_the_budget_alone_is_an_error_naming_it():
    budget = size(NOTE, Context()) - 5
    with pytest.raises(
        DataError, match=r"notes.jsonl, line 7: example 'n1' alone makes a \d+-token prompt.*task.truncate"
    ):
        fitter(budget).fit([NOTE], [Context(shots=SHOTS)])


@pytest.mark.parametrize(
    ("truncate", "kept"),
    [
        ("head", words(15, "w")),
        ("tail", " ".join(f"w{i}" for i in range(5, 20))),
        ("middle", " ".join(f"w{i}" for i in range(7)) + ELLIPSIS + " ".join(f"w{i}" for i in range(13, 20))),
    ],
)
def test_task_truncate_cuts_an_input_to_fit(truncate, kept):
    budget = size(NOTE, Context()) - 5
    fitted = fitter(budget, truncate).fit([NOTE], [Context(shots=SHOTS, passages=PASSAGES)])
    assert fitted.examples[0].input == kept and len(fitted.encoded[0]) <= budget
    assert fitted.contexts[0] == Context()
    record = fitted.record
    assert (record.inputs_truncated, record.shots_dropped, record.passages_dropped) == (1, 4, 3)


def test_a_budget_the_window_cannot_hold_is_a_config_error():
    assert prompt_budget(None, 8192, 64) == 8128 and prompt_budget(1000, 8192, 64) == 1000
    with pytest.raises(ConfigError, match=r"context.builder.max_prompt_tokens.*Set it to 8128 or less"):
        prompt_budget(8150, 8192, 64)
    with pytest.raises(ConfigError, match=r"task.generation.max_new_tokens"):
        prompt_budget(None, 64, 64)


def test_a_run_fits_its_few_shot_prompts_and_records_it(smoke_cfg):
    """Four demonstrations against a budget that holds about two: every prompt is within it, the
    demonstrations left out are counted in the record, and the budget setting is no builder argument."""
    from ragft.recipe import run_experiment_arm
    from tests.conftest import record_of

    unfitted = record_of(run_experiment_arm(smoke_cfg("arm=few_shot", "context.builder.k=4")))
    budget = int(unfitted.cost.generation.prompt_tokens_mean * 0.6)
    run_dir = run_experiment_arm(
        smoke_cfg("arm=few_shot", "context.builder.k=4", f"+context.builder.max_prompt_tokens={budget}")
    )
    record = record_of(run_dir)
    assert record.cost.generation.prompt_tokens_max <= budget
    fit = record.cost.prompt_fit
    assert fit.budget_tokens == budget and fit.prompts_fitted > 0 and fit.shots_dropped >= fit.prompts_fitted
    assert unfitted.cost.prompt_fit.prompts_fitted == 0


class EosWordTokenizer(WordTokenizer):
    eos_token = "<eos>"


def train_features(max_length: int, examples: list[Example], contexts: list[Context], truncate: str | None = None):  # noqa: ANN201
    from ragft.adapt.features import fitted_features

    places = {"n1": "notes.jsonl, line 7"}
    templates = [TEMPLATE] * len(examples)
    return fitted_features(examples, contexts, templates, EosWordTokenizer(), max_length, truncate, places)  # type: ignore[arg-type]


def response_tokens(example: Example) -> int:
    return len((example.reference + "<eos>").split())


def test_a_training_example_within_max_length_is_its_whole_prompt_and_response():
    context = Context(shots=SHOTS[:1])
    room = size(NOTE, context) + response_tokens(NOTE)
    (feature,), fit = train_features(room, [NOTE], [context])
    assert len(feature["input_ids"]) == room and fit.prompts_fitted == 0 and fit.responses_cut == 0
    assert feature["labels"].count(-100) == size(NOTE, context)


def test_a_long_training_prompt_loses_demonstrations_to_leave_its_response_room():
    long_answer = Example("n1", NOTE.input, words(25, "r"))
    context = Context(shots=SHOTS)
    max_length = size(long_answer, Context(shots=SHOTS[:1])) + response_tokens(long_answer)
    (feature,), fit = train_features(max_length, [long_answer], [context])
    assert len(feature["input_ids"]) == max_length  # one demonstration left, the response whole
    assert feature["labels"][-response_tokens(long_answer) :] == feature["input_ids"][-response_tokens(long_answer) :]
    assert (fit.shots_dropped, fit.prompts_fitted, fit.budget_tokens) == (3, 1, max_length)


def test_a_training_input_that_cannot_fit_is_an_error_naming_the_example_and_max_length():
    with pytest.raises(DataError, match=r"notes.jsonl, line 7.*'n1'.*training.max_length.*task.truncate"):
        train_features(size(NOTE, Context()), [NOTE], [Context()])  # no room left for the response


def test_a_training_reference_longer_than_max_length_alone_is_named_as_such():
    long_answer = Example("n1", NOTE.input, words(50, "r"))
    tokens = response_tokens(long_answer)
    with pytest.raises(
        ConfigError, match=rf"training.max_length.*reference of training example 'n1' alone has {tokens}"
    ):
        train_features(tokens - 1, [long_answer], [Context()])


def test_with_truncate_a_long_response_keeps_the_prompt_half_of_max_length():
    long_answer = Example("n1", NOTE.input, words(300, "r"))
    max_length = 2 * size(long_answer, Context())  # the prompt fits its half whole
    (feature,), fit = train_features(max_length, [long_answer], [Context()], truncate="tail")
    kept = max_length - size(long_answer, Context())
    assert len(feature["input_ids"]) == max_length and fit.responses_cut == 1 and fit.inputs_truncated == 0
    assert len(feature["labels"]) - feature["labels"].count(-100) == kept < response_tokens(long_answer)


def test_with_truncate_a_long_input_and_response_share_max_length():
    both_long = Example("n1", words(400, "w"), words(400, "r"))
    (feature,), fit = train_features(100, [both_long], [Context()], truncate="head")
    assert len(feature["input_ids"]) <= 100 and feature["labels"].count(-100) <= 50
    assert (fit.responses_cut, fit.inputs_truncated) == (1, 1)


def test_another_test_sets_prompts_are_fitted_as_its_task_says(smoke_cfg):
    from ragft.eval import testset as testset_module
    from ragft.eval.testset import TestSet
    from ragft.models.generation import Batching
    from ragft.models.loading import load_generator

    cfg = smoke_cfg("+task@evaluate_also.general_qa=general_qa", "generator.max_context=60")
    generator = load_generator(cfg.generator)
    spec = cfg.evaluate_also.general_qa
    test_set = TestSet.load("general_qa", spec)
    budget = 60 - spec.generation.max_new_tokens
    longest = max(len(generator.tokenizer(test_set.template.render(e, Context(), generator.tokenizer))["input_ids"])
                  for e in test_set.examples)  # fmt: skip
    assert longest > budget  # some prompts must be cut for the test to mean anything
    with pytest.raises(DataError, match=r"Set evaluate_also.general_qa.truncate=head"):  # the setting that cuts here
        test_set.score(generator, Batching(4), seed=0)
    cut = smoke_cfg("+task@evaluate_also.general_qa=general_qa", "+evaluate_also.general_qa.truncate=head")
    cut_set = TestSet.load("general_qa", cut.evaluate_also.general_qa)
    seen: list[list[int]] = []
    answer = testset_module.answer
    with pytest.MonkeyPatch.context() as patch:  # the prompts the generator is given
        patch.setattr(
            testset_module,
            "answer",
            lambda g, ex, ctx, prompts, encoded, *a, **k: (
                seen.extend(encoded) or answer(g, ex, ctx, prompts, encoded, *a, **k)
            ),
        )
        score = cut_set.score(generator, Batching(4), seed=0)
    assert len(score.per_example) == len(test_set.examples) == len(seen)
    assert max(len(ids) for ids in seen) <= budget
