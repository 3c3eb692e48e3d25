"""Comparison tables built from run records: leaderboard, baseline tests, fields, cost, retrieval,
leakage, categories and config differences.

Runs that differ only in their seeds (any config key named `seed`) form one `RunGroup`: its
per-example score is the mean over the seeds, its interval is bootstrapped over examples, and the
spread of the seeds' means is shown beside it. A group of one run reports that run's own metrics.json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ragft.data.leakage import describe_pairs
from ragft.eval.registry import mean_with_ci
from ragft.eval.stats import paired_difference
from ragft.record.cache import content_key
from ragft.record.run import finished_runs, read_run

ARM_ORDER = ("zero_shot", "few_shot", "rag", "lora", "lora_rag")
SIGNIFICANCE = 0.05
RETRIEVAL_COSTS = {
    "corpus_passages": "passages",
    "retriever_train_s": "train retriever (s)",
    "embed_corpus_s": "embed corpus (s)",
    "index_build_s": "build index (s)",
    "index_bytes": "index size",
}
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


@dataclass
class RunGroup:
    """The runs of one configuration, one per seed."""

    label: str
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def run(self) -> dict[str, Any]:
        return self.records[0]["run"]

    @property
    def seeds(self) -> list[int]:
        return [r["run"]["seed"] for r in self.records]

    @property
    def config(self) -> dict[str, Any]:
        return self.records[0]["config"]

    @property
    def task_config(self) -> dict[str, Any]:
        return self.config.get("task") or {}

    @property
    def predictions(self) -> list[dict[str, Any]]:
        """The first seed's per-example records (for examples shown side by side)."""
        return self.records[0]["predictions"]

    @cached_property
    def scores(self) -> dict[str, dict[str, float]]:
        """example id -> score name -> mean over the seeds that scored it."""
        collected: dict[str, dict[str, list[float]]] = {}
        for record in self.records:
            for p in record["predictions"]:
                for name, value in p["scores"].items():
                    collected.setdefault(p["id"], {}).setdefault(name, []).append(value)
        return {i: {n: float(np.mean(v)) for n, v in names.items()} for i, names in collected.items()}

    @cached_property
    def metrics(self) -> dict[str, dict[str, float]]:
        if len(self.records) == 1:
            return self.records[0]["metrics"]
        aggregated = {}
        for name in dict.fromkeys(n for r in self.records for n in r["metrics"]):
            values = [s[name] for s in self.scores.values() if name in s]
            per_seed = [r["metrics"][name] for r in self.records if name in r["metrics"]]
            kept = {k: v for k, v in per_seed[0].items() if k in ("higher_is_better", "group")}
            aggregated[name] = {**mean_with_ci(values), **kept}
            if len(per_seed) > 1:
                aggregated[name]["seed_sd"] = float(np.std([m["mean"] for m in per_seed], ddof=1))
        return aggregated

    @cached_property
    def cost(self) -> dict[str, Any]:
        """Each numeric cost figure averaged over the seeds; flags true if true for any seed."""
        costs = [r["cost"] for r in self.records]
        merged: dict[str, Any] = {}
        for key in costs[0]:
            values = [c[key] for c in costs if key in c]
            if all(isinstance(v, bool) for v in values):
                merged[key] = any(values)
            elif all(isinstance(v, (int, float)) for v in values):
                merged[key] = float(np.mean(values))
            else:
                merged[key] = values[0]
        return merged

    @property
    def leakage(self) -> dict[str, Any]:
        return self.records[0].get("leakage", {})

    @property
    def trains(self) -> bool:
        """Whether the run trained the generator (an untrained base, 4-bit or not, trains nothing)."""
        return bool(self.cost.get("trainable_params"))

    @cached_property
    def other_tests(self) -> dict[str, dict[str, Any]]:
        """Scores on other test sets (`evaluate_also`): per-example means over the seeds, aggregated."""
        merged: dict[str, dict[str, Any]] = {}
        for name in dict.fromkeys(n for r in self.records for n in r.get("evaluate_also", {})):
            runs = [r["evaluate_also"][name] for r in self.records if name in r.get("evaluate_also", {})]
            per_example: dict[str, list[float]] = {}
            for scored in runs:
                for example, value in scored.get("per_example", {}).items():
                    per_example.setdefault(example, []).append(value)
            means = {example: float(np.mean(values)) for example, values in per_example.items()}
            aggregate = mean_with_ci(list(means.values())) if len(runs) > 1 else runs[0]
            merged[name] = {**runs[0], **aggregate, "per_example": means}
        return merged

    @property
    def stages(self) -> list[dict[str, Any]]:
        """Sequential fine-tuning: per stage, the scores on its and every earlier stage's test set (first seed)."""
        return self.records[0].get("stages", [])


def load_records(exp_dir: Path) -> list[dict[str, Any]]:
    return [
        {
            **read_run(d),
            "dir": d,
            "config": yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8")),
            "predictions": _read_jsonl(d / "predictions.jsonl"),
        }
        for d in finished_runs(exp_dir)
    ]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted key -> leaf value; an empty mapping is a leaf (`rouge_l: {}` selects a metric)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update({f"{key}.{k}": v for k, v in _flatten(value).items()})
        else:
            flat[str(key)] = value
    return flat


def _config_without_seed(config: dict[str, Any]) -> dict[str, Any]:
    flat = _flatten({k: v for k, v in config.items() if k not in ("paths", "leakage")})
    return {k: v for k, v in flat.items() if k.rsplit(".", 1)[-1] != "seed"}


def group_runs(records: Sequence[dict[str, Any]]) -> list[RunGroup]:
    """Runs with the same experiment, arm and config but for the seed become one group, labelled by
    arm (prefixed by the experiment when several are compared; suffixed by a config hash where
    several configurations share an arm)."""
    keyed: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        key = (r["run"]["exp"], r["run"]["arm"], content_key(_config_without_seed(r["config"])))
        keyed.setdefault(key, []).append(r)
    several_exps = len({exp for exp, _, _ in keyed}) > 1
    rank = {arm: i for i, arm in enumerate(ARM_ORDER)}
    groups = []
    for (exp, arm, config_hash), runs in sorted(
        keyed.items(), key=lambda item: (item[0][0], rank.get(item[0][1], len(rank)), item[0][1], item[0][2])
    ):
        shared = sum(e == exp and a == arm for e, a, _ in keyed) > 1
        label = f"{exp}/{arm}" if several_exps else arm
        label += f" ({config_hash[:6]})" if shared else ""
        groups.append(RunGroup(label, sorted(runs, key=lambda r: r["run"]["seed"])))
    return groups


def default_baseline(groups: Sequence[RunGroup]) -> str:
    return next((g.label for g in groups if g.run["arm"] == "zero_shot"), groups[0].label)


def headline_metrics(groups: Sequence[RunGroup]) -> list[str]:
    """The quality scores (per-field scores and the retrieval group's scores have their own tables)."""
    retrieval = set(retrieval_metrics(groups))
    return list(dict.fromkeys(n for g in groups for n in g.metrics if "/" not in n and n not in retrieval))


def retrieval_metrics(groups: Sequence[RunGroup]) -> list[str]:
    """Scores of the metrics registered in the retrieval group (records before groups: recall_at_k)."""
    return list(
        dict.fromkeys(
            n
            for g in groups
            for n, agg in g.metrics.items()
            if agg.get("group", "retrieval" if n == "recall_at_k" else "") == "retrieval"
        )
    )


# --- quality ---------------------------------------------------------------------------------------


def with_ci(agg: dict[str, float] | None) -> str:
    if agg is None:
        return "–"
    text = f"{agg['mean']:.3f} [{agg['ci_low']:.3f}, {agg['ci_high']:.3f}]"
    return text + (f" sd {agg['seed_sd']:.3f}" if "seed_sd" in agg else "")


def comparisons(groups: Sequence[RunGroup], baseline: str) -> dict[str, dict[str, dict[str, float]]]:
    """label -> metric -> paired difference from the baseline on the examples both scored (runs of
    another task than the baseline's are not compared: their example ids name other examples)."""
    base = next(g for g in groups if g.label == baseline)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for group in groups:
        if group is base or group.run["task"] != base.run["task"]:
            continue
        for metric in headline_metrics([group]):
            candidate = {i: s[metric] for i, s in group.scores.items() if metric in s}
            reference = {i: s[metric] for i, s in base.scores.items() if metric in s}
            if set(candidate) & set(reference):
                results.setdefault(group.label, {})[metric] = paired_difference(candidate, reference)
    return results


def _marker(difference: dict[str, float] | None, higher_is_better: bool) -> str:
    """▲ significantly better than the baseline, ▼ significantly worse, nothing otherwise."""
    if difference is None or difference["p_value"] >= SIGNIFICANCE or difference["diff"] == 0:
        return ""
    return " ▲" if (difference["diff"] > 0) == higher_is_better else " ▼"


def leaderboard(
    groups: Sequence[RunGroup], versus: dict[str, dict[str, dict[str, float]]] | None = None, per_field: bool = False
) -> pd.DataFrame:
    """Metric means with 95% CIs (and the seeds' sd where there are several), marked ▲/▼ where a paired
    test against the baseline is significant; `per_field` picks the `field/<name>` scores instead."""
    versus = versus or {}
    names = (
        list(dict.fromkeys(n for g in groups for n in g.metrics if "/" in n)) if per_field else headline_metrics(groups)
    )
    rows = {}
    for g in groups:
        rows[g.label] = {
            n.split("/")[-1]: with_ci(g.metrics.get(n))
            + _marker(versus.get(g.label, {}).get(n), g.metrics.get(n, {}).get("higher_is_better", True))
            for n in names
        }
        if any(len(x.records) > 1 for x in groups):
            rows[g.label]["seeds"] = ", ".join(map(str, g.seeds))
    return pd.DataFrame.from_dict(rows, orient="index")


def baseline_table(versus: dict[str, dict[str, dict[str, float]]]) -> pd.DataFrame:
    """Each run against the baseline: difference, paired-bootstrap CI and permutation p; `*` if p < 0.05."""
    rows = {
        label: {
            metric: f"{d['diff']:+.3f}{'*' if d['p_value'] < SIGNIFICANCE else ''} "
            f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] p={d['p_value']:.3g}"
            for metric, d in by_metric.items()
        }
        for label, by_metric in versus.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index").fillna("–")


def category_table(groups: Sequence[RunGroup], metric: str) -> pd.DataFrame:
    """Mean of `metric` per category of the test examples (columns: runs)."""
    columns = {}
    for g in groups:
        category = {p["id"]: p["category"] for p in g.predictions}
        frame = pd.DataFrame(
            [{"category": category.get(i, ""), "score": s.get(metric)} for i, s in g.scores.items()]
        ).dropna()
        if not frame.empty:
            columns[g.label] = frame.groupby("category")["score"].mean()
    table = pd.DataFrame(columns)
    return table.map(lambda v: f"{v:.2f}" if pd.notna(v) else "–") if not table.empty else table


# --- cost ------------------------------------------------------------------------------------------


def _size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            break
        n_bytes /= 1024
    return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"


def _figure(cost: dict[str, Any], key: str, spec: str) -> str:
    """One cost figure formatted, or "–" where the run did not record it."""
    value = cost.get(key)
    return "–" if value is None else format(value, spec)


def cost_table(groups: Sequence[RunGroup]) -> pd.DataFrame:
    rows = {}
    for g in groups:
        c = g.cost
        total = c.get("total_params") or c.get("base_total_params") or 1
        trained = c.get("trainable_params", 0)
        reused = " (cached)" if c.get("adapter_reused") else ""
        rows[g.label] = {
            "trainable": f"{trained:,.0f} ({100 * trained / total:.2f}%)" if trained else "0",
            "adapter": _stored(c),
            "train_s": _figure(c, "train_s", ".0f") + reused if trained else "–",
            "train_tokens_per_s": _figure(c, "train_tokens_per_s", ".0f") if trained else "–",
            "train_peak_rss_mb": _train_memory(c) if trained else "–",
            "prompt_tokens_mean": _figure(c, "prompt_tokens_mean", ".0f"),
            "generation_tokens_per_s": _figure(c, "generation_tokens_per_s", ".1f"),
            "latency": f"{_figure(c, 'latency_p50_s', '.2f')} / {_figure(c, 'latency_p95_s', '.2f')}",
            "peak_rss_mb": _figure(c, "peak_rss_mb", ".0f")
            + (f" ({c['rss_at_start_mb']:.0f})" if "rss_at_start_mb" in c else ""),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename(columns=COST_COLUMNS)


def _stored(cost: dict[str, Any]) -> str:
    """What a deployment stores for the run's task: its size and kind (adapter or full model)."""
    return f"{_size(cost['adapter_bytes'])} {cost.get('stored', 'adapter')}" if cost.get("adapter_bytes") else "–"


def _train_memory(cost: dict[str, Any]) -> str:
    """Peak resident memory while training, with the resident memory when training began (a sweep's jobs
    share one process) and the CUDA peak where there is one."""
    text = _figure(cost, "train_peak_rss_mb", ".0f")
    if "train_rss_at_start_mb" in cost:
        text += f" ({cost['train_rss_at_start_mb']:.0f})"
    return text + (f" (CUDA {cost['train_peak_cuda_mb']:.0f})" if "train_peak_cuda_mb" in cost else "")


def compute_seconds(group: RunGroup) -> float:
    """Training (unless reused from the cache, then its recorded time) plus generation wall time."""
    return float(group.cost.get("train_s", 0.0)) + float(group.cost.get("generate_s", 0.0))


# --- adaptation: methods side by side, other test sets (forgetting), sequential stages ------------------


def base_group(groups: Sequence[RunGroup]) -> RunGroup | None:
    """The reference for forgetting: a run of the untrained generator as configured (`adaptation=none`,
    zero-shot, where there is one; not `base_4bit`, which is QLoRA's own reference)."""
    untrained = [g for g in groups if not g.trains]
    ranked = sorted(untrained, key=lambda g: (g.run.get("adaptation") != "none", g.run.get("context") != "zero_shot"))
    return ranked[0] if ranked else None


def other_test_names(groups: Sequence[RunGroup]) -> list[str]:
    return list(dict.fromkeys(n for g in groups for n in g.other_tests))


def _change(group: RunGroup, base: RunGroup | None, name: str) -> dict[str, float] | None:
    """Paired difference from the base model on another test set's examples (None: nothing to compare)."""
    if base is None or group is base or name not in base.other_tests:
        return None
    candidate, reference = group.other_tests[name]["per_example"], base.other_tests[name]["per_example"]
    if not set(candidate) & set(reference):
        return None
    return paired_difference(candidate, reference)


def _change_text(difference: dict[str, float] | None) -> str:
    if difference is None:
        return "–"
    star = "*" if difference["p_value"] < SIGNIFICANCE else ""
    return f"{difference['diff']:+.3f}{star} [{difference['ci_low']:+.3f}, {difference['ci_high']:+.3f}]"


def other_tests_table(groups: Sequence[RunGroup]) -> pd.DataFrame:
    """Each run's score on the other test sets and its change against the base model (forgetting)."""
    base = base_group(groups)
    names = other_test_names(groups)
    metric = {n: next(g.other_tests[n]["metric"] for g in groups if n in g.other_tests) for n in names}
    rows = {}
    for g in groups:
        row = {}
        for name in names:
            scored = g.other_tests.get(name)
            row[f"{name} {metric[name]}"] = with_ci(scored)
            row[f"{name}: change vs base"] = _change_text(_change(g, base, name)) if scored else "–"
        rows[g.label] = row
    return pd.DataFrame.from_dict(rows, orient="index") if names else pd.DataFrame()


def methods_table(groups: Sequence[RunGroup], primary: str) -> pd.DataFrame:
    """The adaptation methods side by side: quality, trainable share, storage per task, training time and
    memory, and the change on each other test set against the base model. Shown where runs compare
    several adaptation methods."""
    if len({g.run.get("adaptation") for g in groups if g.trains}) < 2:
        return pd.DataFrame()
    base = base_group(groups)
    rows = {}
    for g in groups:
        c = g.cost
        total = c.get("total_params") or c.get("base_total_params") or 1
        trained = c.get("trainable_params", 0)
        row = {
            "method": g.run.get("adaptation", "–"),
            primary: with_ci(g.metrics.get(primary)),
            "trainable": f"{100 * trained / total:.3g}%" if trained else "0",
            "stored per task": _stored(c),
            "train time (s)": _figure(c, "train_s", ".0f") if trained else "–",
            "train peak RSS (at start) MB": _train_memory(c) if trained else "–",
        }
        for name in other_test_names(groups):
            row[f"{name} change"] = _change_text(_change(g, base, name))
        rows[g.label] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def stage_tables(groups: Sequence[RunGroup]) -> dict[str, pd.DataFrame]:
    """Per sequentially trained run: before training (where recorded) and after each stage (rows), the
    score on each stage's test set (columns, in training order), each with the metric its task scores first."""
    tables = {}
    for g in groups:
        if not g.stages:
            continue
        trained = [s for s in g.stages if s["stage"] is not None]
        final = trained[-1]["scores"]
        titles = {
            s["stage"]: f"{s['stage']} ({final[s['stage']]['metric']})" if s["stage"] in final else s["stage"]
            for s in trained
        }
        labels = iter(f"after {i}: {s['stage']}" for i, s in enumerate(trained, start=1))
        rows = {
            "before training" if stage["stage"] is None else next(labels): {
                title: f"{stage['scores'][name]['mean']:.3f}" if name in stage["scores"] else "–"
                for name, title in titles.items()
            }
            for stage in g.stages
        }
        tables[g.label] = pd.DataFrame.from_dict(rows, orient="index").fillna("–")
    return tables


# --- retrieval and leakage ---------------------------------------------------------------------------


def retrieval_table(groups: Sequence[RunGroup]) -> pd.DataFrame:
    """Retrieval quality (the retrieval group's metrics) and index cost of the runs that retrieve."""
    names = retrieval_metrics(groups)
    rows = {}
    for g in groups:
        if not any(m in g.metrics for m in names) and "index_bytes" not in g.cost:
            continue
        row = {m: with_ci(g.metrics.get(m)) for m in names}
        row["retriever"] = g.run.get("retriever", "–")
        row["embedder"] = g.run.get("embedder", "–")
        for key, title in RETRIEVAL_COSTS.items():
            value = g.cost.get(key)
            row[title] = "–" if value is None else _size(value) if key == "index_bytes" else f"{value:.3g}"
        rows[g.label] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def leakage_table(groups: Sequence[RunGroup]) -> pd.DataFrame:
    """One row per task and check: how many test examples duplicate train inputs or corpus text. Runs
    whose records of the same check differ (other data or settings) get a row each, labelled by run."""
    rows: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str]] = set()
    for g in groups:
        for check, summary in g.leakage.items():
            name = f"{g.run['task']}: {check.replace('_', '/')}"
            fingerprint = json.dumps(summary, sort_keys=True)
            if (name, fingerprint) in seen:
                continue
            seen.add((name, fingerprint))
            rows[name if name not in rows else f"{name} ({g.label})"] = {
                "checked": summary["checked"],
                "exact": summary["exact"],
                "near": summary["near"],
                "leak rate": f"{summary['rate']:.1%}",
                "closest pair": f"{summary['max_similarity']:.2f}",
                "not checked (short)": summary.get("too_short", "–"),
                "examples": describe_pairs(summary["examples"]) or "–",
            }
    return pd.DataFrame.from_dict(rows, orient="index")


# --- configs ---------------------------------------------------------------------------------------


def config_differences(groups: Sequence[RunGroup]) -> pd.DataFrame:
    """The resolved config keys whose values differ between groups (paths and seeds excluded; a data
    file is named by its file name, not where it was read from)."""
    flat = {g.label: pd.Series(_shown_config(g.config)).map(_cell) for g in groups}
    table = pd.DataFrame(flat).fillna("–")  # "–": the run's config has no such key
    if table.empty:
        return table
    return table[table.nunique(axis=1) > 1]


def _shown_config(config: dict[str, Any]) -> dict[str, Any]:
    return {
        key: Path(value).name if key.rsplit(".", 1)[-1] == "path" and isinstance(value, str) else value
        for key, value in _config_without_seed(config).items()
    }


def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
