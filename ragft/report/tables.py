"""Comparison tables built from run records: leaderboard, fields, cost, categories, config diffs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ragft.record import finished_runs, read_run
from ragft.stats import paired_difference

ARM_ORDER = ("zero_shot", "few_shot", "rag", "lora", "lora_rag")
COST_COLUMNS = {
    "trainable": "trainable params",
    "adapter": "stored adapter",
    "train_s": "train time (s)",
    "train_tokens_per_s": "train tokens/s",
    "prompt_tokens_mean": "prompt tokens/example",
    "generation_tokens_per_s": "generated tokens/s",
    "latency": "latency p50 / p95 (s)",
    "peak_rss_mb": "peak RSS (at start) MB",
}


def load_records(exp_dir: Path) -> list[dict[str, Any]]:
    records = [
        {**read_run(d), "dir": d, "predictions": _read_jsonl(d / "predictions.jsonl")} for d in finished_runs(exp_dir)
    ]
    rank = {arm: i for i, arm in enumerate(ARM_ORDER)}
    return sorted(records, key=lambda r: (rank.get(r["run"]["arm"], len(rank)), r["run"]["arm"], r["run"]["run_id"]))


def run_label(record: dict[str, Any], records: Sequence[dict[str, Any]]) -> str:
    """The arm name, plus the run id where several runs share an arm (e.g. a hyper-parameter sweep)."""
    arm = record["run"]["arm"]
    shared = sum(r["run"]["arm"] == arm for r in records) > 1
    return f"{arm} ({record['run']['run_id'].rsplit('-', 1)[-1][:6]})" if shared else arm


def with_ci(agg: dict[str, float] | None) -> str:
    if agg is None:
        return "–"
    return f"{agg['mean']:.3f} [{agg['ci_low']:.3f}, {agg['ci_high']:.3f}]"


def leaderboard(records: Sequence[dict[str, Any]], per_field: bool = False) -> pd.DataFrame:
    """Metric means with 95% CIs; `per_field` picks the `field/<name>` scores instead of the headline ones."""
    names = list(dict.fromkeys(n for r in records for n in r["metrics"] if ("/" in n) == per_field))
    rows = {run_label(r, records): {n.split("/")[-1]: with_ci(r["metrics"].get(n)) for n in names} for r in records}
    return pd.DataFrame.from_dict(rows, orient="index")


def baseline_comparison(records: Sequence[dict[str, Any]], baseline: str) -> pd.DataFrame:
    """Each run against the baseline run on the same examples: mean difference [95% CI] and p-value
    of a paired permutation test per headline metric; `*` marks p < 0.05."""
    labels = {run_label(r, records): r for r in records}
    base_scores = _scores_by_example(labels[baseline])
    rows = {}
    for label, record in labels.items():
        if label == baseline:
            continue
        scores = _scores_by_example(record)
        row = {}
        for metric in [m for m in record["metrics"] if "/" not in m]:
            candidate = {i: s[metric] for i, s in scores.items() if metric in s}
            reference = {i: s[metric] for i, s in base_scores.items() if metric in s}
            if set(candidate) & set(reference):
                d = paired_difference(candidate, reference)
                star = "*" if d["p_value"] < 0.05 else ""
                row[metric] = f"{d['diff']:+.3f}{star} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] p={d['p_value']:.3g}"
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index").fillna("–")


def default_baseline(records: Sequence[dict[str, Any]]) -> str:
    labels = [run_label(r, records) for r in records]
    return "zero_shot" if "zero_shot" in labels else labels[0]


def _scores_by_example(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {p["id"]: p["scores"] for p in read_predictions(record)}


def _size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return ""


def cost_table(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    rows = {}
    for r in records:
        c = r["cost"]
        total = c.get("total_params") or c.get("base_total_params") or 1
        trained = c.get("trainable_params", 0)
        rows[run_label(r, records)] = {
            "trainable": f"{trained:,} ({100 * trained / total:.2f}%)" if trained else "0",
            "adapter": _size(c["adapter_bytes"]) if c.get("adapter_bytes") else "–",
            "train_s": f"{c['train_s']:.0f}" + (" (cached)" if c.get("adapter_reused") else "") if trained else "–",
            "train_tokens_per_s": f"{c['train_tokens_per_s']:.0f}" if trained else "–",
            "prompt_tokens_mean": f"{c['prompt_tokens_mean']:.0f}",
            "generation_tokens_per_s": f"{c['generation_tokens_per_s']:.1f}",
            "latency": f"{c['latency_p50_s']:.2f} / {c['latency_p95_s']:.2f}",
            "peak_rss_mb": f"{c['peak_rss_mb']:.0f}"
            + (f" ({c['rss_at_start_mb']:.0f})" if "rss_at_start_mb" in c else ""),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename(columns=COST_COLUMNS)


def read_predictions(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's per-example records, read once by `load_records`."""
    return record["predictions"]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def category_table(records: Sequence[dict[str, Any]], metric: str) -> pd.DataFrame:
    """Mean of `metric` per category of the test examples (columns: runs)."""
    columns = {}
    for r in records:
        frame = pd.DataFrame(
            [{"category": p["category"], "score": p["scores"].get(metric)} for p in read_predictions(r)]
        ).dropna()
        if not frame.empty:
            columns[run_label(r, records)] = frame.groupby("category")["score"].mean()
    table = pd.DataFrame(columns)
    return table.map(lambda v: f"{v:.2f}") if not table.empty else table


def config_differences(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The resolved config keys whose values differ between runs (paths excluded)."""
    flat = {}
    for r in records:
        config = yaml.safe_load((r["dir"] / "config.yaml").read_text(encoding="utf-8"))
        config.pop("paths", None)
        flat[run_label(r, records)] = pd.json_normalize(config, sep=".").iloc[0].map(_cell)
    table = pd.DataFrame(flat).fillna("–")  # "–": the run's config has no such key
    if table.empty:
        return table
    return table[table.nunique(axis=1) > 1]


def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
