"""Retrieval only, for tuning a retriever without generating: `python -m ragft.retrieve retriever=bm25`,
or a sweep, `python -m ragft.retrieve -m retriever=dense_flat,bm25,hybrid`.

Ranks the passages of the task's corpus for every example of a split that has gold passages, scores
the rankings (recall@k, MRR, nDCG with bootstrap intervals) and times index building and search.
Each configuration writes one JSON record to `<results>/<exp_name>/retrieval/`, and
`retrieval.csv` beside it gathers them all.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ragft.cache import content_key
from ragft.errors import ConfigError, RagftError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
OmegaConf.register_new_resolver("ragft_root", lambda: str(Path(__file__).resolve().parent.parent), replace=True)
log = logging.getLogger("ragft")

RECORD_KEYS = ("task", "embedder", "retriever", "chunking", "retrieval_eval")


def evaluate_retriever(cfg: DictConfig) -> dict[str, Any]:
    """Build the configured retriever over the task's corpus and score its rankings on one split."""
    from ragft.data import load_task
    from ragft.metrics import score_predictions
    from ragft.resources import RunResources
    from ragft.retrieval import document_ranking
    from ragft.types import Prediction

    settings = cfg.retrieval_eval
    task = load_task(cfg.task.name, cfg.task.data, cfg.task.get("corpus"), cfg.task.get("limits"))
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
    resources = RunResources(task, cfg.embedder, cfg.retriever, cfg.get("chunking"))
    start = time.perf_counter()
    retriever = resources.retriever()
    built = time.perf_counter()
    hits = retriever.search([e.input for e in examples], settings.depth, resources)
    searched = time.perf_counter()
    predictions = [
        Prediction(example=e, prompt="", output="", ranking=document_ranking(row)) for e, row in zip(examples, hits)
    ]
    metrics = score_predictions(predictions, {"ranking": {"ks": list(settings.ks), "ndcg_k": settings.depth}})
    return {
        "retriever": cfg.retriever.name,
        "embedder": cfg.embedder.name,
        "chunking": OmegaConf.to_container(cfg.chunking) if cfg.get("chunking") else None,
        "task": task.name,
        "split": settings.split,
        "queries": len(examples),
        "passages": len(resources.passages()),
        "build_s": built - start,
        "query_ms": 1000 * (searched - built) / len(examples),
        **{k: v for k, v in resources.stats().items() if k in ("index_bytes", "retriever_train_s", "index_reused")},
        "metrics": metrics,
    }


def write_record(cfg: DictConfig, record: dict[str, Any]) -> Path:
    folder = Path(cfg.paths.results) / cfg.exp_name / "retrieval"
    folder.mkdir(parents=True, exist_ok=True)
    container = OmegaConf.to_container(cfg, resolve=True)
    key = content_key({k: container.get(k) for k in RECORD_KEYS})
    path = folder / f"{cfg.retriever.name}-{key}.json"
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
        f"build {record['build_s']:.2f} s, {record['query_ms']:.2f} ms/query"
    )


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        record = evaluate_retriever(cfg)
    except RagftError as err:
        log.error("%s", err)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"ragft: error: {err}", file=sys.stderr)
        sys.exit(2)
    path = write_record(cfg, record)
    log.info("%s -> %s", summary(record), path)
    print(summary(record))


if __name__ == "__main__":
    main()
