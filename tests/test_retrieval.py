"""Dense retrieval over a small constructed corpus with the real (small, packaged) MiniLM embedder."""

import numpy as np
import pytest

from ragft.errors import ConfigError
from ragft.models import load_embedder
from ragft.retrieval import DenseRetriever, RagContext, embed_texts
from ragft.types import Example, Passage
from tests.conftest import compose_config

TOPICS = {
    "asthma": "Asthma causes wheeze and shortness of breath; inhalers open the airways.",
    "migraine": "Migraine is a throbbing headache with light sensitivity and sometimes visual aura.",
    "eczema": "Eczema is itchy, dry, inflamed skin, often on the elbows and knees.",
    "fracture": "A fracture is a broken bone, treated with a cast or surgical fixation.",
    "diabetes": "Diabetes means high blood sugar; patients feel thirsty and urinate often.",
    "gout": "Gout is a painful swollen big toe joint caused by uric acid crystals.",
    "otitis": "Otitis media is a middle ear infection with ear pain and muffled hearing.",
    "anaemia": "Anaemia is a low haemoglobin level causing tiredness and pale skin.",
    "cystitis": "Cystitis is a bladder infection with burning on urination.",
    "glaucoma": "Glaucoma is raised pressure in the eye that damages the optic nerve.",
}
QUERIES = {
    "asthma": "my chest is wheezy and I am short of breath",
    "migraine": "one-sided pounding headache, lights hurt my eyes",
    "fracture": "I fell and I think my wrist bone is broken",
    "cystitis": "it burns when I pass water",
    "otitis": "my child has an earache and cannot hear well",
}


class Resources:
    def __init__(self) -> None:
        self.embedder = load_embedder(compose_config().embedder)

    def embed(self, texts):  # noqa: ANN001
        return embed_texts(self.embedder, texts)


@pytest.fixture(scope="module")
def resources() -> Resources:
    return Resources()


@pytest.fixture(scope="module")
def corpus() -> list[Passage]:
    filler = [Passage(f"filler-{i}", f"Clinic notice {i}: the car park closes at {i + 5} pm.") for i in range(10)]
    return [Passage(key, text) for key, text in TOPICS.items()] + filler


@pytest.mark.parametrize(
    ("index", "search_params"), [("Flat", {}), ("HNSW16", {"efSearch": 32}), ("IVF2,Flat", {"nprobe": 2})]
)
def test_each_index_type_returns_the_gold_passage_first(index, search_params, resources, corpus):
    retriever = DenseRetriever(index=index, search_params=search_params)
    retriever.build(corpus, resources)
    hits = retriever.search(list(QUERIES.values()), k=3, resources=resources)
    assert [row[0].id for row in hits] == list(QUERIES)
    assert all(len(row) == 3 for row in hits)
    assert retriever.stats["index_bytes"] > 0 and retriever.stats["corpus_passages"] == len(corpus)


def test_rag_context_carries_top_k_passages(resources, corpus):
    retriever = DenseRetriever()
    retriever.build(corpus, resources)
    resources.retriever = lambda: retriever
    [context] = RagContext(top_k=2).build([Example("q", QUERIES["migraine"], "")], resources)
    assert len(context.passages) == 2 and context.passages[0].id == "migraine"


def test_embeddings_are_cached_and_normalised(resources, artefact_cache):
    texts = ["one text", "another text"]
    first = embed_texts(resources.embedder, texts)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    cached = list((artefact_cache / "embeddings").iterdir())
    assert np.array_equal(embed_texts(resources.embedder, texts), first)
    assert list((artefact_cache / "embeddings").iterdir()) == cached


def test_an_invalid_faiss_index_names_the_config_key(resources, corpus):
    with pytest.raises(ConfigError, match=r"retriever.index.*'NoSuchIndex'"):
        DenseRetriever(index="NoSuchIndex").build(corpus, resources)


def test_retrieval_without_a_corpus_is_a_config_error(resources):
    with pytest.raises(ConfigError, match="task.corpus"):
        DenseRetriever().build([], resources)


def test_top_k_must_be_positive():
    with pytest.raises(ConfigError, match="context.builder.top_k"):
        RagContext(top_k=0)
