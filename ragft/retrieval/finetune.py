"""Fine-tuning retrieval models on the task's query -> gold passage pairs (sentence-transformers),
cached by base model, data and settings like any artefact:

- `EmbedderFinetune` (`retriever.finetune`): the embedder, with the multiple-negatives ranking loss and
  hard negatives mined from the corpus;
- `RerankerFinetune` (`retriever.reranker.finetune`): a cross-encoder, with binary cross-entropy over
  each query's gold passage and the passages the embedder ranks highest outside it.

Their settings come only from the config (conf/retriever/dense_ft.yaml, reranked_ft.yaml).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ragft.config.values import NonNegativeInt, PositiveFloat, PositiveInt, Share
from ragft.errors import ConfigError
from ragft.record.cache import cached_dir, content_key
from ragft.record.cost import RetrievalCost
from ragft.retrieval.embeddings import Embedder, encode
from ragft.types import Example, Passage

log = logging.getLogger(__name__)

Pair = tuple[str, str, str]  # (query, gold passage text, gold document id)


@dataclass(frozen=True)
class _TrainingSettings:
    """What both fine-tunings are configured with; their bounds are checked with the config, before
    any work (ragft/config/components.py)."""

    config_key: ClassVar[str]
    epochs: PositiveFloat
    batch_size: PositiveInt
    learning_rate: PositiveFloat
    warmup_ratio: Share
    hard_negatives: NonNegativeInt  # per pair: the passages ranked highest outside the gold document
    seed: NonNegativeInt

    @property
    def params(self) -> dict[str, Any]:
        """The settings that shape the trained model (part of its cache key)."""
        names = ("epochs", "batch_size", "learning_rate", "warmup_ratio", "hard_negatives", "seed")
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class EmbedderFinetune(_TrainingSettings):
    """The embedder trained on the train split's (query, gold passage) pairs with in-batch and mined
    hard negatives (multiple-negatives ranking loss)."""

    config_key: ClassVar[str] = "retriever.finetune"

    def train(
        self, embedder: Embedder, examples: Sequence[Example], passages: Sequence[Passage]
    ) -> tuple[Embedder, RetrievalCost]:
        """Train (or reuse) a fine-tuned copy of `embedder`; returns it and what training cost."""
        folder, cost = _cached_finetune(
            self, "embedders", "retriever", examples, passages,
            key_parts=("embedder-ft", embedder.path),
            train=lambda pairs, out: _train_embedder(embedder.path, pairs, passages, self.params, out),
            fix="Map gold passage ids with task.data.fields.gold_passages, or use a retriever without finetune.",
        )  # fmt: skip
        return embedder.with_source(folder), cost


@dataclass(frozen=True)
class RerankerFinetune(_TrainingSettings):
    """A cross-encoder trained from a base folder (any BERT-like model, e.g. the embedder's) on the train
    split: each query with its gold passage (label 1) and the `hard_negatives` passages `embedder` ranks
    highest outside the gold document (label 0), binary cross-entropy."""

    config_key: ClassVar[str] = "retriever.reranker.finetune"
    embedder: Embedder  # mines the hard negatives

    def train(
        self, base_path: str, examples: Sequence[Example], passages: Sequence[Passage]
    ) -> tuple[str, RetrievalCost]:
        """Train (or reuse) the cross-encoder; returns its folder and what training cost."""

        def train(pairs: list[Pair], out: Path) -> None:
            negatives = hard_negatives(self.embedder.model, pairs, passages, self.hard_negatives)  # only when training
            _train_reranker(base_path, pairs, negatives, self.params, out)

        return _cached_finetune(
            self, "rerankers", "reranker", examples, passages,
            key_parts=("reranker-ft", base_path, self.embedder.path), train=train,
        )  # fmt: skip


def training_pairs(examples: Sequence[Example], passages: Sequence[Passage]) -> list[Pair]:
    """(query, gold passage text, gold document) for every train example with a gold passage in the
    corpus; a chunked document contributes its first chunk (gold ids name documents, not chunks)."""
    first_chunk: dict[str, str] = {}
    for passage in passages:
        first_chunk.setdefault(passage.doc_id, passage.text)
    return [(e.input, first_chunk[d], d) for e in examples for d in e.gold_passages if d in first_chunk]


def _cached_finetune(
    settings: _TrainingSettings,
    cache_kind: str,
    prefix: str,
    examples: Sequence[Example],
    passages: Sequence[Passage],
    key_parts: tuple[Any, ...],
    train: Callable[[list[Pair], Path], None],
    fix: str = "",
) -> tuple[str, RetrievalCost]:
    """What both fine-tunings share: build the training pairs, and train into the artefact cache (keyed
    by base model, data, settings, device and dtype) unless a copy is there."""
    from ragft.models.loading import best_device, compute_dtype

    pairs = training_pairs(examples, passages)
    if len(pairs) < 2:
        raise ConfigError(
            settings.config_key, f"needs train examples with gold passages in the corpus; found {len(pairs)} pair(s).", fix
        )  # fmt: skip
    device = best_device()
    key = content_key(
        *key_parts, pairs, [(p.doc_id, p.text) for p in passages], settings.params, device.type,
        str(compute_dtype(device)),
    )  # fmt: skip
    folder, trained_now = cached_dir(cache_kind, key, lambda out: train(pairs, out))
    stats = json.loads((folder / "train_stats.json").read_text())
    cost = RetrievalCost(
        retriever_train_s=stats[f"{prefix}_train_s"],
        retriever_train_examples=stats[f"{prefix}_train_examples"],
        retriever_train_pairs=len(pairs),
        retriever_train_loss=stats[f"{prefix}_train_loss"],
        retriever_reused=not trained_now,
    )
    return str(folder), cost


def hard_negatives(model: Any, pairs: Sequence[Pair], passages: Sequence[Passage], n: int) -> list[list[str]]:
    """For each pair, the `n` passages the model ranks highest for the query that do not belong to the
    query's gold document. (sentence-transformers' miner excludes only the pair's own positive; another
    chunk of the gold document is no negative.)"""
    queries = encode(model, [q for q, _, _ in pairs])
    corpus = encode(model, [p.text for p in passages])
    negatives = []
    for (_, _, gold), scores in zip(pairs, queries @ corpus.T):
        ranked = [passages[i] for i in np.argsort(-scores, kind="stable")]
        negatives.append([p.text for p in ranked if p.doc_id != gold][:n])
    return negatives


def training_arguments(arguments_class: Any, params: dict[str, Any], out: Path, device: Any, **extra: Any) -> Any:
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


def _train_embedder(
    base_path: str, pairs: list[Pair], passages: Sequence[Passage], params: dict[str, Any], out: Path
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
    model = SentenceTransformer(base_path, device=str(device), local_files_only=True)
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


def _train_reranker(
    base_path: str, pairs: Sequence[Pair], negatives: list[list[str]], params: dict[str, Any], out: Path
) -> None:
    from datasets import Dataset
    from sentence_transformers import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed

    from ragft.models.loading import best_device

    started = time.perf_counter()
    device = best_device()
    set_seed(params["seed"])  # a base without a relevance head gets a fresh one: the same one every time
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
