"""The cost table and the cost figures other tables and plots share, read from each group's typed `Cost`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ragft.record.cost import Cost, GenerationCost, MemoryCost, TrainingCost
from ragft.report.groups import RunGroup

COST_COLUMNS = {
    "trainable": "trainable params",
    "adapter": "stored per task",
    "train_s": "train time (s)",
    "train_tokens_per_s": "train tokens/s",
    "train_peak_rss_mb": "train peak RSS (at start) MB",
    "prompt_tokens_mean": "prompt tokens/example",
    "throughput": "throughput at batch size: examples/s, generated tokens/s",
    "latency": "latency at batch 1, p50 / p95 (s)",
    "generate_peak_rss_mb": "generation peak RSS (at start) MB",
    "peak_rss_mb": "run peak RSS (at start) MB",
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
    """Peak resident memory while training, with the resident memory when training began and the CUDA
    peak where there is one."""
    return peak_memory(training.memory)


def peak_memory(memory: MemoryCost) -> str:
    """A stretch's peak resident memory with what was resident as it began (after memory earlier work
    freed was released), and CUDA's peak where there is one; "–" where nothing was measured."""
    if not memory.peak_rss_mb:
        return "–"
    text = f"{memory.peak_rss_mb:.0f} ({memory.rss_at_start_mb:.0f})"
    return text + (f" (CUDA {memory.peak_cuda_mb:.0f})" if memory.peak_cuda_mb is not None else "")


def throughput(generation: GenerationCost) -> str:
    """Answers and generated tokens per second of the batched pass over the test set, at its batch size."""
    if not generation.generate_s:
        return "–"
    examples = figure(generation.throughput_examples_per_s or None, ".2f")
    tokens = figure(generation.throughput_tokens_per_s, ".1f")
    return f"{examples} ex/s, {tokens} tok/s (batch {generation.batch_size})"


def latency(generation: GenerationCost) -> str:
    """Seconds to answer one request alone (batch 1), median and 95th percentile over the sampled
    examples; "–" where none was sampled (and in records made before latency was measured alone)."""
    p50, p95 = generation.latency_batch1_p50_s, generation.latency_batch1_p95_s
    if p50 is None or p95 is None:
        return "–"
    return f"{p50:.2f} / {p95:.2f} (n={generation.latency_sample})"


def batch1_latency(group: RunGroup) -> float:
    """The median batch-1 latency (s) of a group, NaN where it was not measured (a plot leaves it out)."""
    p50 = group.cost.generation.latency_batch1_p50_s
    return float("nan") if p50 is None else float(p50)


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
            "throughput": throughput(generation),
            "latency": latency(generation),
            "generate_peak_rss_mb": peak_memory(generation.memory),
            "peak_rss_mb": peak_memory(cost.memory),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename(columns=COST_COLUMNS)


def compute_seconds(group: RunGroup) -> float:
    """Training (unless reused from the cache, then its recorded time) plus generation wall time."""
    training = group.cost.training
    return float(training.train_s if training else 0.0) + float(group.cost.generation.generate_s)
