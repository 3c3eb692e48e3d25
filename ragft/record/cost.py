"""Measured cost of a run: wall time per stage, peak memory, parameters, tokens and latency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psutil
import torch


class PeakMemory:
    """Samples this process's resident memory in a background thread; records the peak (and CUDA's).

    The resident memory at the start is recorded too: in a sweep, the jobs share one process, so a
    later job's peak includes what earlier jobs left allocated.
    """

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.peak_rss = 0
        self.start_rss = psutil.Process().memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def record(self) -> dict[str, float]:
        out = {"peak_rss_mb": self.peak_rss / 2**20, "rss_at_start_mb": self.start_rss / 2**20}
        if torch.cuda.is_available():
            out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return out


class StageTimer:
    """Wall-clock seconds per named stage of a run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def parameter_counts(model: Any) -> dict[str, int]:
    """Trainable and total parameters; a 4-bit weight counts as the weights it packs."""
    if hasattr(model, "get_nb_trainable_parameters"):  # peft: virtual-token embeddings included
        trainable, total = model.get_nb_trainable_parameters()
    elif hasattr(model, "num_parameters"):  # transformers: unpacks 4-bit weights
        trainable, total = model.num_parameters(only_trainable=True), model.num_parameters()
    else:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total_params": int(total), "trainable_params": int(trainable)}


def generation_cost(
    prompt_tokens: Sequence[int], output_tokens: Sequence[int], latencies: Sequence[float], generate_s: float
) -> dict[str, float]:
    """Prompt length per example, generation throughput and per-example latency percentiles."""
    return {
        "prompt_tokens_mean": float(np.mean(prompt_tokens)),
        "prompt_tokens_max": int(np.max(prompt_tokens)),
        "output_tokens_mean": float(np.mean(output_tokens)),
        "generate_s": generate_s,
        "generation_tokens_per_s": float(np.sum(output_tokens) / generate_s) if generate_s else 0.0,
        "latency_p50_s": float(np.percentile(latencies, 50)),
        "latency_p95_s": float(np.percentile(latencies, 95)),
    }
