"""The cost table and the cost figures other tables and plots share, read from each group's typed `Cost`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ragft.record.cost import Cost, TrainingCost
from ragft.report.groups import RunGroup

COST_COLUMNS = {
    "trainable": "trainable params",
    "adapter": "stored per task",
    "train_s": "train time (s)",
    "train_tokens_per_s": "train tokens/s",
    "train_peak_rss_mb": "train peak RSS (at start) MB",
    "prompt_tokens_mean": "prompt tokens/example",
    "generation_tokens_per_s": "generated tokens/s",
    "latency": "latency p50 / p95 (s)",
    "peak_rss_mb": "peak RSS (at start) MB",
}


def size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            break
        n_bytes /= 1024
    return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"


def figure(value: float | None, spec: str) -> str:
    """One cost figure formatted, or "–" where the run did not record it."""
    return "–" if value is None else format(value, spec)


def total_params(cost: Cost) -> float:
    """The model's parameters as trained (a prompt-tuning run adds its virtual tokens), else the base's."""
    return (cost.training.total_params if cost.training else 0) or cost.base_total_params or 1


def stored(cost: Cost) -> str:
    """What a deployment stores for the run's task: its size and kind (adapter or full model)."""
    training = cost.training
    if training is None or not training.adapter_bytes:
        return "–"
    return f"{size(training.adapter_bytes)} {training.stored or 'adapter'}"


def train_memory(training: TrainingCost) -> str:
    """Peak resident memory while training, with the resident memory when training began (a sweep's jobs
    share one process) and the CUDA peak where there is one."""
    memory = training.memory
    text = f"{memory.peak_rss_mb:.0f} ({memory.rss_at_start_mb:.0f})"
    return text + (f" (CUDA {memory.peak_cuda_mb:.0f})" if memory.peak_cuda_mb is not None else "")


def _trainable(cost: Cost) -> str:
    trained = cost.trainable_params
    return f"{trained:,.0f} ({100 * trained / total_params(cost):.2f}%)" if trained else "0"


def _training_cells(training: TrainingCost | None) -> dict[str, str]:
    """Training time (marked where the adapter came from the cache), throughput and memory; "–" for a
    run that trains nothing."""
    if training is None or not training.trainable_params:
        return {"train_s": "–", "train_tokens_per_s": "–", "train_peak_rss_mb": "–"}
    return {
        "train_s": figure(training.train_s, ".0f") + (" (cached)" if training.adapter_reused else ""),
        "train_tokens_per_s": figure(training.train_tokens_per_s, ".0f"),
        "train_peak_rss_mb": train_memory(training),
    }


def cost_table(groups: Sequence[RunGroup]) -> pd.DataFrame:
    rows = {}
    for g in groups:
        cost, generation = g.cost, g.cost.generation
        rows[g.label] = {
            "trainable": _trainable(cost),
            "adapter": stored(cost),
            **_training_cells(cost.training),
            "prompt_tokens_mean": figure(generation.prompt_tokens_mean, ".0f"),
            "generation_tokens_per_s": figure(generation.generation_tokens_per_s, ".1f"),
            "latency": f"{figure(generation.latency_p50_s, '.2f')} / {figure(generation.latency_p95_s, '.2f')}",
            "peak_rss_mb": f"{cost.memory.peak_rss_mb:.0f} ({cost.memory.rss_at_start_mb:.0f})",
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename(columns=COST_COLUMNS)


def compute_seconds(group: RunGroup) -> float:
    """Training (unless reused from the cache, then its recorded time) plus generation wall time."""
    training = group.cost.training
    return float(training.train_s if training else 0.0) + float(group.cost.generation.generate_s)
