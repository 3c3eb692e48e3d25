from collections.abc import Sequence

import numpy as np
import pytest

from ragft.context.shots import FewShot, RandomShots, SimilarShots, ZeroShot
from ragft.context.sources import ContextSources
from ragft.context.template import PromptTemplate
from ragft.errors import ConfigError
from ragft.types import Context, Example, Passage, TaskData

TEMPLATE = PromptTemplate(
    instruction="Write the report.",
    input_format="Note: {input}",
    passages_format="Protocols:\n{passages}",
    passage_format="[{id}] {text}",
    system="Be brief.",
)


def example(i: int, text: str = "") -> Example:
    return Example(id=f"e{i}", input=text or f"note {i}", reference=f"report {i}")


class KeywordEmbedder:
    """Deterministic 'embedding': one dimension per keyword; enough to test nearest-neighbour choice."""

    words = ("asthma", "migraine", "eczema")

    def embed(self, texts: Sequence[str], cache: bool = True) -> np.ndarray:
        vectors = np.array([[float(w in t) for w in self.words] + [0.1] for t in texts], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def sources_with(train: list[Example]) -> ContextSources:
    """A task's context sources whose train split is `train` (no corpus, no retriever)."""
    return ContextSources(TaskData("toy", {"train": train, "test": []}, []))


class PlainTokenizer:
    chat_template = None


def test_user_message_places_instruction_passages_and_input_in_order():
    text = TEMPLATE.user_message(example(1), Context(passages=(Passage("p1", "Dose 5 mg."),)))
    assert text == "Write the report.\n\nProtocols:\n[p1] Dose 5 mg.\n\nNote: note 1"


def test_shots_become_prior_chat_turns_with_their_reference_as_the_answer():
    messages = TEMPLATE.messages(example(1), Context(shots=(example(2), example(3))))
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"] == "report 2" and messages[-1]["content"] == "Note: note 1"
    # the instruction is stated once, in the first user turn
    assert [m["content"].startswith("Write the report.") for m in messages if m["role"] == "user"] == [
        True,
        False,
        False,
    ]


def test_render_without_a_chat_template_joins_the_messages():
    assert (
        TEMPLATE.render(example(1), Context(), PlainTokenizer()) == "Be brief.\n\nWrite the report.\n\nNote: note 1\n\n"
    )


def test_render_uses_the_tokenizers_chat_template(smoke_cfg):
    from transformers import AutoTokenizer

    from ragft.models.sources import resolve_source

    tokenizer = AutoTokenizer.from_pretrained(resolve_source(smoke_cfg().generator.source, "generator.source"))
    prompt = TEMPLATE.render(example(1), Context(), tokenizer)
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert prompt.endswith("Note: note 1<|im_end|>\n<|im_start|>assistant\n")


def test_zero_shot_adds_nothing():
    assert ZeroShot().build([example(1)], sources_with([])) == [Context()]


def test_random_shots_are_seeded_and_exclude_the_example_itself():
    pool = [example(i) for i in range(6)]
    sources = sources_with(pool)
    builder = FewShot(k=3, selection=RandomShots(seed=4))
    first = builder.build(pool, sources, exclude_self=True)
    assert first == builder.build(pool, sources, exclude_self=True)
    for ex, context in zip(pool, first):
        assert len(context.shots) == 3 and ex not in context.shots
    assert FewShot(k=3, selection=RandomShots(seed=5)).build(pool, sources, True) != first


def test_similar_shots_pick_the_nearest_train_examples():
    sources = sources_with(
        [example(0, "asthma wheeze"), example(1, "migraine aura"), example(2, "eczema itch"),
         example(3, "asthma night cough")]
    )  # fmt: skip
    builder = FewShot(k=2, selection=SimilarShots(KeywordEmbedder()))
    [context] = builder.build([example(9, "asthma attack")], sources)
    assert {s.id for s in context.shots} == {"e0", "e3"}


def test_k_larger_than_the_train_split_names_the_config_key_before_any_work():
    builder = FewShot(k=5, selection=RandomShots(seed=0))
    sources = sources_with([example(i) for i in range(3)])
    for attempt in (lambda: builder.check(sources), lambda: builder.build([example(9)], sources)):
        with pytest.raises(ConfigError, match=r"context.builder.k.*asks for 5.*train split has 3"):
            attempt()


def test_k_must_be_positive():
    from ragft.config.components import check_component

    selection = {"_target_": "ragft.context.shots.RandomShots", "seed": 0}
    with pytest.raises(ConfigError, match="context.builder.k`: 0 is not allowed"):
        check_component("context.builder", {"_target_": "ragft.context.shots.FewShot", "k": 0, "selection": selection})


def test_few_shot_configs_build_their_selection():
    from ragft.errors import build
    from ragft.retrieval import Embedder
    from tests.conftest import compose_config

    similar = build(compose_config("context=few_shot").context.builder, "context.builder")
    assert isinstance(similar.selection, SimilarShots) and isinstance(similar.selection.embedder, Embedder)
    random_shots = build(compose_config("context=few_shot_random", "seed=7").context.builder, "context.builder")
    assert isinstance(random_shots.selection, RandomShots) and random_shots.selection.seed == 7
    assert random_shots.k == similar.k


def test_an_input_format_may_name_any_field_of_the_record(smoke_cfg, clinic):
    """`{specialty}` and `{knowledge}` are read from each example's record and set beside `{input}`, in the
    prompt of the example and of each shot."""
    from ragft.data.loading import task_from_config

    cfg = smoke_cfg("task.template.input_format='Note ({specialty}, {knowledge}): {input}'")
    task = task_from_config(cfg.task)
    template = PromptTemplate.from_config(cfg.task.template)
    first, shot = task.split("test")[0], task.split("train")[0]
    record = {note["id"]: note for note in clinic.notes}[first.id]
    message = template.user_message(first, Context(shots=(shot,)))
    assert message.endswith(f"Note ({record['specialty']}, {record['knowledge']}): {record['note']}")
    shot_turn = template.messages(first, Context(shots=(shot,)))[1]["content"]
    assert f"Note ({shot.category}, " in shot_turn
