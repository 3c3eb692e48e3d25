"""Run records written directly (no model) through the record's own writer: report tests control every
score, and the folders cannot drift from what a real run writes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from ragft.eval.registry import mean_with_ci
from ragft.record.cache import content_key
from ragft.record.cost import Cost, GenerationCost, MemoryCost, RetrievalCost, TrainingCost
from ragft.record.run import RunFailure, RunIdentity, RunRecord, RunWriter, Summary
from ragft.types import Example, Prediction

XSS = "<script>document.title='XSS'</script><img src=x onerror=\"document.title='XSS'\">"
PROVENANCE = {"started": "2026-01-01T00:00:00+00:00", "wall_s": 1.5, "git_sha": "abc1234", "device": "cpu"}


def identity(
    exp_dir: Path,
    arm: str,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
    task: str = "toy",
    group_key: str | None = None,
) -> RunIdentity:
    """`arm`'s identity; its group key derives from the arm, task and settings unless given (runs whose
    data differ in content, not in any setting, have different group keys)."""
    shown = {"arm_setting": arm, "task.name": task, "seed": seed, "training.seed": seed, **(settings or {})}
    group_key = group_key or content_key(arm, task, {k: v for k, v in shown.items() if not k.endswith("seed")})
    retrieves = "rag" in arm
    return RunIdentity(
        exp=exp_dir.name,
        arm=arm,
        key=content_key(group_key, seed),
        group_key=group_key,
        task=task,
        primary_metric="exact_match",
        generator="tiny",
        adaptation="lora" if "lora" in arm else "none",
        context="rag" if retrieves else "zero_shot" if arm == "lora" else arm,
        retriever="dense_flat" if retrieves else None,
        seed=seed,
        embedder="tiny" if retrieves else None,
        settings=shown,
    )


def cost(arm: str) -> Cost:
    training = TrainingCost(
        total_params=1000,
        trainable_params=10,
        stored="adapter",
        adapter_bytes=2048,
        train_s=5.0,
        train_tokens_per_s=100.0,
        memory=MemoryCost(peak_rss_mb=600.0, rss_at_start_mb=450.0),
    )
    retrieval = RetrievalCost(corpus_passages=12, embed_corpus_s=0.5, index_build_s=0.01, index_bytes=4096)
    return Cost(
        base_total_params=1000,
        training=training if "lora" in arm else None,
        retrieval=retrieval if "rag" in arm else None,
        generation=GenerationCost(
            batch_size=4,
            prompt_tokens_mean=10.0,
            prompt_tokens_max=10,
            output_tokens_mean=3.0,
            generate_s=2.0,
            examples=4,
            throughput_examples_per_s=2.0,
            throughput_tokens_per_s=15.0,
            latency_sample=4,
            latency_batch1_p50_s=0.1,
            latency_batch1_p95_s=0.2,
        ),
        memory=MemoryCost(peak_rss_mb=500.0, rss_at_start_mb=400.0),
        stage_s={"generate": 2.0},
    )


def predictions(scores: list[float], output: str, metric: str = "exact_match") -> list[Prediction]:
    """One prediction per score; a NaN score is left out of the example's scores (not scored), as a run
    leaves out a score that is not a finite number."""
    return [
        Prediction(
            example=Example(
                id=f"e{i}",
                input=f"note {i}",
                reference="the reference",
                category="odd" if i % 2 else "even",
                breakdowns={"knowledge": "unseen" if i % 4 == 0 else "seen"},
            ),
            prompt="p",
            output=output,
            prompt_tokens=10,
            output_tokens=3,
            scores={} if math.isnan(s) else {metric: s},
        )
        for i, s in enumerate(scores)
    ]


def leakage(n: int) -> dict[str, Any]:
    pair = {"test": "e0", "train": "t9", "similarity": 1.0, "kind": "exact"}
    return {
        "train_test": {"checked": n, "max_similarity": 1.0, "exact": 1, "near": 0, "rate": 1 / n, "examples": [pair]}
    }


def write_run(
    exp_dir: Path,
    arm: str,
    scores: list[float],
    seed: int = 0,
    output: str = "a report",
    settings: dict[str, Any] | None = None,
    task: str = "toy",
    group_key: str | None = None,
    run_cost: Cost | None = None,
    metric: str = "exact_match",
) -> Path:
    """One finished run of `arm` whose per-example `metric` scores are `scores` (NaN: not scored),
    costing `run_cost` (default: `cost(arm)`); `hedge_rate` is a metric where lower is better."""
    ident = identity(exp_dir, arm, seed, settings, task, group_key)
    run_dir = exp_dir / ident.run_id
    writer = RunWriter(run_dir)
    writer.write_text("config.yaml", yaml.safe_dump({"seed": seed, "note": "for a person; the report never reads it"}))
    writer.write_predictions(predictions(scores, output, metric))
    summary = Summary(**mean_with_ci(scores), higher_is_better=metric != "hedge_rate", group="quality")
    spent = run_cost or cost(arm)
    record = RunRecord(ident, "finished", dict(PROVENANCE), {metric: summary}, spent, leakage(len(scores)))
    writer.commit(record)
    return run_dir


def write_failed_run(
    exp_dir: Path,
    arm: str,
    stage: str = "train",
    error: str = "RuntimeError",
    message: str = "out of memory",
    seed: int = 0,
) -> Path:
    """One run of `arm` that failed at `stage`: no scores, no predictions, an empty cost."""
    ident = identity(exp_dir, arm, seed)
    run_dir = exp_dir / ident.run_id
    writer = RunWriter(run_dir)
    writer.write_text("config.yaml", yaml.safe_dump({"seed": seed}))
    record = RunRecord(ident, "failed", dict(PROVENANCE), failure=RunFailure(stage, error, message))
    writer.commit(record)
    return run_dir


def write_experiment(root: Path, name: str = "toy_exp", n: int = 40) -> Path:
    """zero_shot right on 25% of examples, few_shot on 90%, rag as zero_shot; a model output holds markup."""
    exp_dir = root / name
    write_run(exp_dir, "zero_shot", [float(i % 4 == 0) for i in range(n)], output=XSS)
    write_run(exp_dir, "few_shot", [float(i % 10 != 0) for i in range(n)])
    write_run(exp_dir, "rag", [float(i % 4 == 0) for i in range(n)])
    return exp_dir
