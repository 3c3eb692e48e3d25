"""Run records written directly (no model): report tests control every score."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ragft.eval.registry import mean_with_ci
from ragft.record.cache import content_key

XSS = "<script>document.title='XSS'</script><img src=x onerror=\"document.title='XSS'\">"


def write_run(
    exp_dir: Path,
    arm: str,
    scores: list[float],
    seed: int = 0,
    output: str = "a report",
    extra: dict | None = None,
    task: str = "toy",
) -> Path:
    """One finished run of `arm` whose per-example `exact_match` scores are `scores` (NaN: not scored)."""
    run_dir = exp_dir / f"{arm}-{content_key(arm, seed, extra or {}, task)}"
    run_dir.mkdir(parents=True)
    run = {
        "exp": exp_dir.name, "arm": arm, "run_id": run_dir.name, "task": task, "generator": "tiny",
        "adaptation": "none", "context": arm, "retriever": "dense_flat", "embedder": "tiny", "seed": seed,
        "status": "finished", "wall_s": 1.5,
    }  # fmt: skip
    config = {"arm_setting": arm, "task": {"name": task}, "seed": seed, "training": {"seed": seed}, **(extra or {})}
    predictions = [
        {"id": f"e{i}", "category": "even" if i % 2 == 0 else "odd", "input": f"note {i}", "prompt": "p",
         "retrieved": [], "gold_passages": [], "output": output, "reference": "the reference",
         "prompt_tokens": 10, "output_tokens": 3, "latency_s": 0.1, "scores": {"exact_match": s}}
        for i, s in enumerate(scores)
    ]  # fmt: skip
    cost = {
        "base_total_params": 1000, "trainable_params": 10 if "lora" in arm else 0, "adapter_bytes": 2048,
        "train_s": 5.0 if "lora" in arm else 0.0, "train_tokens_per_s": 100.0, "prompt_tokens_mean": 10.0,
        "generate_s": 2.0, "generation_tokens_per_s": 15.0, "latency_p50_s": 0.1, "latency_p95_s": 0.2,
        "peak_rss_mb": 500.0, "rss_at_start_mb": 400.0,
    }  # fmt: skip
    leakage = {"train_test": {"checked": len(scores), "max_similarity": 1.0, "exact": 1, "near": 0,
                              "rate": 1 / len(scores), "examples": [{"test": "e0", "train": "t9", "similarity": 1.0,
                                                                     "kind": "exact"}]}}  # fmt: skip
    files = {
        "run.json": json.dumps(run),
        "config.yaml": yaml.safe_dump(config),
        "metrics.json": json.dumps({"exact_match": {**mean_with_ci(scores), "higher_is_better": True}}),
        "cost.json": json.dumps(cost),
        "leakage.json": json.dumps(leakage),
        "predictions.jsonl": "\n".join(json.dumps(p) for p in predictions) + "\n",
    }
    for name, text in files.items():
        (run_dir / name).write_text(text, encoding="utf-8")
    return run_dir


def write_experiment(root: Path, name: str = "toy_exp", n: int = 40) -> Path:
    """zero_shot right on 25% of examples, few_shot on 90%, rag as zero_shot; a model output holds markup."""
    exp_dir = root / name
    write_run(exp_dir, "zero_shot", [float(i % 4 == 0) for i in range(n)], output=XSS)
    write_run(exp_dir, "few_shot", [float(i % 10 != 0) for i in range(n)])
    write_run(exp_dir, "rag", [float(i % 4 == 0) for i in range(n)])
    return exp_dir
