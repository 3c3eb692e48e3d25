"""Retrieval metrics: the gold passages among those in the prompt, and the retriever's ranking."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragft.eval.registry import register_metric
from ragft.types import Prediction


@register_metric("recall_at_k", group="retrieval")
def recall_at_k(prediction: Prediction) -> dict[str, float]:
    """Share of the example's gold passages among the passages retrieved for its prompt (0 where the
    retriever found nothing; not scored where the arm does not retrieve)."""
    gold = set(prediction.example.gold_passages)
    if prediction.ranking is None or not gold:
        return {}
    return {"recall_at_k": len(gold & set(prediction.retrieved)) / len(gold)}


@register_metric("ranking", group="retrieval")
def ranking(prediction: Prediction, ks: Sequence[int] = (1, 5), ndcg_k: int = 10) -> dict[str, float]:
    """The retriever's document ranking (to the context's `depth` documents) against the gold passages:
    `recall@k` for each k, `mrr` (reciprocal rank of the first gold document, 0 if none is ranked)
    and `ndcg@<ndcg_k>` with binary relevance."""
    gold = set(prediction.example.gold_passages)
    if prediction.ranking is None or not gold:
        return {}  # the arm does not retrieve, or the example has no gold passage
    ranked = list(prediction.ranking)  # may be empty: the retriever found nothing, every score is 0
    hits = [doc in gold for doc in ranked]
    scores = {f"recall@{k}": sum(hits[:k]) / len(gold) for k in ks}
    scores["mrr"] = next((1.0 / rank for rank, hit in enumerate(hits, start=1) if hit), 0.0)
    dcg = sum(1.0 / np.log2(rank + 1) for rank, hit in enumerate(hits[:ndcg_k], start=1) if hit)
    ideal = sum(1.0 / np.log2(rank + 1) for rank in range(1, min(len(gold), ndcg_k) + 1))
    scores[f"ndcg@{ndcg_k}"] = dcg / ideal
    return scores
