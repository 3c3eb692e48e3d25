"""Retriever fine-tuning: the embedder trained on the task's query -> gold passage pairs with the
multiple-negatives ranking loss and hard negatives mined from the corpus (sentence-transformers),
cached by base model, data and settings like any artefact."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragft.errors import ConfigError
from ragft.record.cache import cached_dir, content_key
from ragft.types import Example, Passage

log = logging.getLogger(__name__)

DEFAULTS = {
    "epochs": 1,
    "batch_size": 16,
    "learning_rate": 2.0e-5,
    "warmup_ratio": 0.1,
    "hard_negatives": 1,  # per pair: the base model's best-ranked passages outside the gold document
    "seed": 0,
}


def training_pairs(examples: Sequence[Example], passages: Sequence[Passage]) -> list[tuple[str, str, str]]:
    """(query, gold passage text, gold document) for every train example with a gold passage in the
    corpus; a chunked document contributes its first chunk (gold ids name documents, not chunks)."""
    first_chunk: dict[str, str] = {}
    for passage in passages:
        first_chunk.setdefault(passage.doc_id, passage.text)
    return [(e.input, first_chunk[d], d) for e in examples for d in e.gold_passages if d in first_chunk]


def finetune_embedder(
    base: Any, examples: Sequence[Example], passages: Sequence[Passage], settings: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Train (or reuse) a fine-tuned copy of the `base` SentenceTransformer; returns its folder and stats."""
    return _cached_finetune(
        "embedders", "retriever", "retriever.finetune", DEFAULTS, settings, examples, passages,
        key_parts=("embedder-ft", getattr(base, "ragft_path", repr(base))),
        train=lambda pairs, params, out: _train(base, pairs, passages, params, out),
        fix="Map gold passage ids with task.data.fields.gold_passages, or use a retriever without finetune.",
    )  # fmt: skip


def _cached_finetune(
    cache_kind: str,
    prefix: str,
    config_key: str,
    defaults: Mapping[str, Any],
    settings: Mapping[str, Any],
    examples: Sequence[Example],
    passages: Sequence[Passage],
    key_parts: tuple[Any, ...],
    train: Callable[[list, dict, Path], None],
    fix: str = "",
) -> tuple[str, dict[str, Any]]:
    """What both fine-tunings share: check the settings, build the training pairs, and train into the
    artefact cache (keyed by base model, data, settings, device and dtype) unless a copy is there."""
    from ragft.models.loading import best_device, compute_dtype

    if not isinstance(settings, Mapping) or set(settings) - set(defaults):
        raise ConfigError(config_key, f"expects a mapping with keys from {sorted(defaults)}, got {settings!r}.")
    params = {**defaults, **settings}
    pairs = training_pairs(examples, passages)
    if len(pairs) < 2:
        raise ConfigError(
            config_key, f"needs train examples with gold passages in the corpus; found {len(pairs)} pair(s).", fix
        )
    device = best_device()
    key = content_key(
        *key_parts, pairs, [(p.doc_id, p.text) for p in passages], params, device.type, str(compute_dtype(device))
    )
    folder, trained_now = cached_dir(cache_kind, key, lambda out: train(pairs, params, out))
    stats = json.loads((folder / "train_stats.json").read_text())
    return str(folder), {**stats, f"{prefix}_train_pairs": len(pairs), f"{prefix}_reused": not trained_now}


def hard_negatives(
    model: Any, pairs: Sequence[tuple[str, str, str]], passages: Sequence[Passage], n: int
) -> list[list[str]]:
    """For each pair, the `n` passages the model ranks highest for the query that do not belong to the
    query's gold document. (sentence-transformers' miner excludes only the pair's own positive; another
    chunk of the gold document is no negative.)"""
    from ragft.retrieval.embeddings import encode

    queries = encode(model, [q for q, _, _ in pairs])
    corpus = encode(model, [p.text for p in passages])
    negatives = []
    for (_, _, gold), scores in zip(pairs, queries @ corpus.T):
        ranked = [passages[i] for i in np.argsort(-scores, kind="stable")]
        negatives.append([p.text for p in ranked if p.doc_id != gold][:n])
    return negatives


def training_arguments(arguments_class: Any, params: Mapping[str, Any], out: Path, device: Any, **extra: Any) -> Any:
    """The sentence-transformers trainer arguments both fine-tunings share (bf16 where the device has it)."""
    import torch

    from ragft.models.loading import compute_dtype

    return arguments_class(
        output_dir=str(out / "trainer"),
        num_train_epochs=params["epochs"],
        per_device_train_batch_size=params["batch_size"],
        learning_rate=params["learning_rate"],
        warmup_ratio=params["warmup_ratio"],
        seed=params["seed"],
        bf16=compute_dtype(device) == torch.bfloat16,
        save_strategy="no",
        dataloader_pin_memory=device.type == "cuda",
        report_to="none",
        logging_steps=10,
        **extra,
    )


def _train(
    base: Any, pairs: list[tuple[str, str, str]], passages: Sequence[Passage], params: dict[str, Any], out: Path
) -> None:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from ragft.models.loading import best_device

    started = time.perf_counter()
    device = best_device()
    model = SentenceTransformer(base.ragft_path, device=str(device), local_files_only=True)
    columns = {"anchor": [q for q, _, _ in pairs], "positive": [p for _, p, _ in pairs]}
    n = params["hard_negatives"]
    if n:
        mined = hard_negatives(model, pairs, passages, n)
        keep = [i for i, row in enumerate(mined) if len(row) == n]  # a corpus too small for n negatives
        columns = {name: [values[i] for i in keep] for name, values in columns.items()}
        columns.update({f"negative_{j + 1}": [mined[i][j] for i in keep] for j in range(n)})
    data = Dataset.from_dict(columns)
    args = training_arguments(
        SentenceTransformerTrainingArguments, params, out, device,
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # a repeated passage would be its own false negative
    )  # fmt: skip
    loss = MultipleNegativesRankingLoss(model)
    result = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss).train()
    _save_trained(model, result, len(data), out, started, "retriever")


RERANKER_DEFAULTS = {
    "epochs": 1,
    "batch_size": 16,
    "learning_rate": 2.0e-5,
    "warmup_ratio": 0.1,
    "hard_negatives": 3,  # per query, labelled 0 beside its gold passage labelled 1
    "seed": 0,
}


def finetune_reranker(
    base_path: str, embedder: Any, examples: Sequence[Example], passages: Sequence[Passage], settings: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Train (or reuse) a cross-encoder from `base_path` (any BERT-like folder, e.g. the embedder's) on
    the train split: each query with its gold passage (label 1) and the `hard_negatives` passages the
    `embedder` ranks highest outside the gold document (label 0), binary cross-entropy."""

    def train(pairs: list, params: dict, out: Path) -> None:
        negatives = hard_negatives(embedder, pairs, passages, params["hard_negatives"])  # only when training
        _train_reranker(base_path, pairs, negatives, params, out)

    return _cached_finetune(
        "rerankers", "reranker", "retriever.reranker.finetune", RERANKER_DEFAULTS, settings, examples, passages,
        key_parts=("reranker-ft", base_path, getattr(embedder, "ragft_path", repr(embedder))), train=train,
    )  # fmt: skip


def _train_reranker(
    base_path: str, pairs: Sequence[tuple[str, str, str]], negatives: list[list[str]], params: dict, out: Path
) -> None:
    from datasets import Dataset
    from sentence_transformers import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from ragft.models.loading import best_device

    started = time.perf_counter()
    device = best_device()
    model = CrossEncoder(base_path, num_labels=1, device=str(device), local_files_only=True)
    rows: dict[str, list] = {"query": [], "passage": [], "label": []}
    for (query, positive, _), wrong in zip(pairs, negatives):
        for text, label in [(positive, 1.0), *((n, 0.0) for n in wrong)]:
            rows["query"].append(query)
            rows["passage"].append(text)
            rows["label"].append(label)
    args = training_arguments(CrossEncoderTrainingArguments, params, out, device)
    data = Dataset.from_dict(rows).shuffle(seed=params["seed"])
    result = CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=BinaryCrossEntropyLoss(model)).train()
    _save_trained(model, result, len(data), out, started, "reranker")


def _save_trained(model: Any, result: Any, examples: int, out: Path, started: float, prefix: str) -> None:
    """The trained model and its `<prefix>_train_*` stats into the cache folder (the trainer's scratch goes)."""
    model.save(str(out))
    shutil.rmtree(out / "trainer", ignore_errors=True)
    seconds = time.perf_counter() - started
    stats = {f"{prefix}_train_s": seconds, f"{prefix}_train_loss": float(result.training_loss),
             f"{prefix}_train_examples": examples}  # fmt: skip
    (out / "train_stats.json").write_text(json.dumps(stats))
    log.info("fine-tuned the %s on %d examples in %.0f s", prefix, examples, seconds)
