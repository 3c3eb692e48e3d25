"""Retrieval only, for tuning a retriever without generating: `python -m ragft.retrieve retriever=bm25`,
or a sweep, `python -m ragft.retrieve -m retriever=dense_flat,bm25,hybrid`.

Ranks the passages of the task's corpus for every example of a split that has gold passages, scores
the rankings (recall@k, MRR, nDCG with bootstrap intervals) and times the set-up (loading models,
fine-tuning, embedding, indexing) and the batched search.
Each configuration writes one JSON record to `<results>/<exp_name>/retrieval/`, and
`retrieval.csv` beside it gathers them all.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ragft.cli import command, run_job
from ragft.config.plain import as_dict
from ragft.errors import ConfigError
from ragft.record.cache import content_key
from ragft.types import Example, TaskData

log = logging.getLogger("ragft")

RECORD_KEYS = ("task", "embedder", "retriever", "chunking", "retrieval_eval")


def evaluate_retriever(cfg: DictConfig) -> dict[str, Any]:
    """Build the configured retriever over the task's corpus and score its rankings on one split."""
    from ragft.context.rag import RagContext
    from ragft.context.sources import ContextSources
    from ragft.data.loading import task_from_config
    from ragft.eval.registry import score_predictions
    from ragft.types import Prediction

    settings = cfg.retrieval_eval
    task = task_from_config(cfg.task)
    examples = _scored_examples(task, settings)
    sources = ContextSources.from_config(task, cfg.get("retriever"), cfg.get("chunking"))
    start = time.perf_counter()
    sources.retriever()  # load the models, fine-tune if configured, embed and index the corpus
    built = time.perf_counter()
    contexts = RagContext(top_k=1, depth=settings.depth).build(examples, sources)
    searched = time.perf_counter()
    predictions = [Prediction(example=e, prompt="", output="", ranking=c.ranking) for e, c in zip(examples, contexts)]
    metrics = score_predictions(predictions, {"ranking": {"ks": list(settings.ks), "ndcg_k": settings.depth}})
    cost = sources.cost()
    assert cost is not None  # built above
    return {
        "retriever": retriever_name(cfg),
        "embedder": cfg.embedder.name,
        "chunking": OmegaConf.to_container(cfg.chunking) if cfg.get("chunking") else None,
        "task": task.name,
        "split": settings.split,
        "queries": len(examples),
        "passages": len(sources.passages()),
        "setup_s": built - start,  # loading models, fine-tuning (unless cached), embedding, indexing
        "search_ms_per_query": 1000 * (searched - built) / len(examples),  # one batch, query embedding included
        "index_bytes": cost.index_bytes,
        "index_reused": cost.index_reused,
        **({"retriever_train_s": cost.retriever_train_s} if cost.retriever_train_s is not None else {}),
        "metrics": {name: asdict(summary) for name, summary in metrics.items()},
    }


def _scored_examples(task: TaskData, settings: DictConfig) -> list[Example]:
    """The examples of `retrieval_eval.split` that have gold passages; the settings checked."""
    if settings.split not in task.splits:
        raise ConfigError(
            "retrieval_eval.split", f"'{settings.split}' is not a split of the task: {sorted(task.splits)}."
        )
    examples = [e for e in task.split(settings.split) if e.gold_passages]
    if not examples:
        raise ConfigError(
            "task.data.fields.gold_passages",
            f"no example of the '{settings.split}' split has gold passages, so retrieval cannot be scored.",
            "Map the field that holds each example's gold passage ids.",
        )
    if settings.depth < 1 or any(not 1 <= k <= settings.depth for k in settings.ks):
        raise ConfigError(
            "retrieval_eval",
            f"needs depth >= 1 and every k in ks between 1 and depth; got {settings.depth}, {list(settings.ks)}.",
        )
    return examples


def retriever_name(cfg: DictConfig) -> str:
    """The retriever's config name (`retriever=bm25` -> bm25), from Hydra's choices where Hydra runs."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("retriever")
        if choice:
            return str(choice)
    return str(cfg.retriever._target_).rsplit(".", 1)[-1]


def write_record(cfg: DictConfig, record: dict[str, Any]) -> Path:
    folder = Path(cfg.paths.results) / cfg.exp_name / "retrieval"
    folder.mkdir(parents=True, exist_ok=True)
    container = as_dict(cfg)
    key = content_key({k: container.get(k) for k in RECORD_KEYS})
    path = folder / f"{retriever_name(cfg)}-{key}.json"
    path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    rows = [_row(json.loads(p.read_text(encoding="utf-8"))) for p in sorted(folder.glob("*.json"))]
    pd.DataFrame(rows).to_csv(folder.parent / "retrieval.csv", index=False)
    return path


def _row(record: dict[str, Any]) -> dict[str, Any]:
    scores = {name: round(agg["mean"], 4) for name, agg in record["metrics"].items()}
    return {k: v for k, v in record.items() if k != "metrics"} | scores


def summary(record: dict[str, Any]) -> str:
    scores = ", ".join(
        f"{name} {agg['mean']:.3f} [{agg['ci_low']:.3f}, {agg['ci_high']:.3f}]"
        for name, agg in record["metrics"].items()
    )
    return (
        f"{record['retriever']} ({record['passages']} passages, {record['queries']} queries): {scores}; "
        f"set-up {record['setup_s']:.2f} s, search {record['search_ms_per_query']:.2f} ms per query (batched)"
    )


def evaluate_and_record(cfg: DictConfig) -> None:
    record = evaluate_retriever(cfg)
    path = write_record(cfg, record)
    log.info("%s -> %s", summary(record), path)
    print(summary(record))


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_job(evaluate_and_record, cfg)


if __name__ == "__main__":
    command(main)
