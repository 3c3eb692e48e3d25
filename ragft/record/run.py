"""Run records: one folder per run, written atomically, and the experiment table gathered from them."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

from ragft.record.cache import publish, staging_dir
from ragft.types import Prediction

RUN_FILES = ("run.json", "config.yaml", "metrics.json", "cost.json", "predictions.jsonl")


def is_finished(run_dir: Path) -> bool:
    return all((run_dir / name).is_file() for name in RUN_FILES)


class RunWriter:
    """Collects a run's files in a hidden staging folder; `commit` moves it into place in one rename."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        self.staging = staging_dir(run_dir)

    def write_json(self, name: str, data: Any) -> None:
        (self.staging / name).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")

    def write_text(self, name: str, text: str) -> None:
        (self.staging / name).write_text(text, encoding="utf-8")

    def write_predictions(self, predictions: Iterable[Prediction]) -> None:
        with (self.staging / "predictions.jsonl").open("w", encoding="utf-8") as handle:
            for prediction in predictions:
                handle.write(json.dumps(prediction.record(), ensure_ascii=False) + "\n")

    def commit(self) -> None:
        if self.run_dir.exists():  # an unfinished folder left by hand; a finished one is never rewritten
            shutil.rmtree(self.run_dir)
        publish(self.staging, self.run_dir)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def read_run(run_dir: Path) -> dict[str, Any]:
    def load(name: str) -> Any:
        return json.loads((run_dir / name).read_text(encoding="utf-8"))

    record = {"run": load("run.json"), "metrics": load("metrics.json"), "cost": load("cost.json")}
    for optional, empty in (("leakage", {}), ("evaluate_also", {}), ("stages", [])):
        record[optional] = load(f"{optional}.json") if (run_dir / f"{optional}.json").is_file() else empty
    return record


def finished_runs(exp_dir: Path) -> list[Path]:
    return sorted(p for p in exp_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and is_finished(p))


def table_row(record: dict[str, Any]) -> dict[str, Any]:
    """One flat row: run identity, each metric's mean and CI, each cost figure."""
    row = {k: v for k, v in record["run"].items() if not isinstance(v, (dict, list))}
    for name, agg in record["metrics"].items():
        row[name] = agg["mean"]
        row[f"{name}_ci_low"] = agg["ci_low"]
        row[f"{name}_ci_high"] = agg["ci_high"]
    row.update({f"cost_{k}": v for k, v in record["cost"].items() if not isinstance(v, (dict, list))})
    row.update({f"leak_{check}_rate": summary["rate"] for check, summary in record.get("leakage", {}).items()})
    row.update({f"also_{name}_{s['metric']}": s["mean"] for name, s in record.get("evaluate_also", {}).items()})
    return row


def write_table(exp_dir: Path) -> pd.DataFrame:
    """Gather every finished run of the experiment into runs.csv and runs.parquet (one row per run)."""
    with FileLock(str(exp_dir / ".table.lock")):
        rows = [table_row(read_run(run_dir)) for run_dir in finished_runs(exp_dir)]
        table = pd.DataFrame(rows)
        if not table.empty:
            table = table.sort_values(["arm", "run_id"]).reset_index(drop=True)
        for name, write in (("runs.csv", table.to_csv), ("runs.parquet", table.to_parquet)):
            tmp = exp_dir / f".{name}.tmp"
            write(tmp, index=False)
            os.replace(tmp, exp_dir / name)
    return table
