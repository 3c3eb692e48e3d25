"""Retriever fine-tuning: the embedder trained on the task's query -> gold passage pairs with the
multiple-negatives ranking loss and hard negatives mined from the corpus (sentence-transformers),
cached by base model, data and settings like any artefact."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ragft.cache import cached_dir, content_key
from ragft.errors import ConfigError
from ragft.types import Example, Passage

log = logging.getLogger(__name__)

DEFAULTS = {
    "epochs": 1,
    "batch_size": 16,
    "learning_rate": 2.0e-5,
    "warmup_ratio": 0.1,
    "hard_negatives": 1,  # per pair, mined with the base model among the corpus passages that are not gold
    "seed": 0,
}


def training_pairs(examples: Sequence[Example], passages: Sequence[Passage]) -> list[tuple[str, str]]:
    """(query, gold passage text) for every train example with a gold passage in the corpus (a chunked
    document contributes its first chunk)."""
    first_chunk: dict[str, str] = {}
    for passage in passages:
        first_chunk.setdefault(passage.doc_id, passage.text)
    return [(e.input, first_chunk[d]) for e in examples for d in e.gold_passages if d in first_chunk]


def finetune_embedder(
    base: Any, examples: Sequence[Example], passages: Sequence[Passage], settings: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Train (or reuse) a fine-tuned copy of the `base` SentenceTransformer; returns its folder and stats."""
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ConfigError("retriever.finetune", f"unknown setting(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}.")
    params = {**DEFAULTS, **settings}
    pairs = training_pairs(examples, passages)
    if len(pairs) < 2:
        raise ConfigError(
            "retriever.finetune",
            f"needs train examples with gold passages in the corpus; found {len(pairs)} pair(s).",
            "Map gold passage ids with task.data.fields.gold_passages, or use a retriever without finetune.",
        )
    corpus = [p.text for p in passages]
    key = content_key("embedder-ft", getattr(base, "ragft_path", repr(base)), pairs, corpus, params)
    stats: dict[str, Any] = {"retriever_train_pairs": len(pairs)}
    start = time.perf_counter()
    folder, trained_now = cached_dir("embedders", key, lambda out: _train(base, pairs, corpus, params, out, stats))
    stats.update(retriever_train_s=time.perf_counter() - start, retriever_reused=not trained_now)
    if not trained_now:
        stats["retriever_train_s"] = float((folder / "train_seconds.txt").read_text())
    return str(folder), stats


def _train(
    base: Any, pairs: list[tuple[str, str]], corpus: list[str], params: dict[str, Any], out: Path, stats: dict
) -> None:
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from sentence_transformers.util import mine_hard_negatives

    from ragft.models import best_device, compute_dtype

    started = time.perf_counter()
    model = SentenceTransformer(base.ragft_path, device=str(best_device()), local_files_only=True)
    data = Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]})
    if params["hard_negatives"]:
        data = mine_hard_negatives(
            data, model, corpus=corpus, num_negatives=params["hard_negatives"], sampling_strategy="top",
            output_format="n-tuple", verbose=False,
        )  # fmt: skip
    device = best_device()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "trainer"),
        num_train_epochs=params["epochs"],
        per_device_train_batch_size=params["batch_size"],
        learning_rate=params["learning_rate"],
        warmup_ratio=params["warmup_ratio"],
        seed=params["seed"],
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # a repeated passage would be its own false negative
        bf16=compute_dtype(device) == torch.bfloat16,
        save_strategy="no",
        dataloader_pin_memory=device.type == "cuda",
        report_to="none",
        logging_steps=5,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(model)
    )
    result = trainer.train()
    model.save(str(out))
    shutil.rmtree(out / "trainer", ignore_errors=True)
    seconds = time.perf_counter() - started
    (out / "train_seconds.txt").write_text(f"{seconds:.3f}")
    stats.update(retriever_train_loss=float(result.training_loss), retriever_train_examples=len(data))
    log.info("fine-tuned the retriever's embedder on %d pairs in %.0f s", len(pairs), seconds)
