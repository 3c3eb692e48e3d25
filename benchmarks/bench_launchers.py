"""Per-run peak memory of one sweep under three Hydra launchers, with the real default models.

    python benchmarks/bench_launchers.py           # zero_shot, rag, lora on SmolLM2-135M: ~12-15 min on 2 cores
    python benchmarks/bench_launchers.py --tiny    # tiny random models (+debug=smoke): about a minute

The same reduced sweep (`+exp=medical_reports arm=zero_shot,rag,lora task.limits.test=20
training.max_steps=10 generation.latency_sample=2`) runs as one `python -m ragft.run -m` command per
launcher: `basic` (every job in the one process, one after another), `hydra/launcher=submitit_local`
(every job a fresh process, all at once) and `hydra/launcher=joblib` with `n_jobs=3` (one loky worker
process per job). Each sweep gets an artefact cache of its own that shares only the converted models,
so no run reuses another launcher's adapter or index. The runs' own records (runs.csv) give each run's
resident memory at its start and its peaks (the kernel's high-water mark, reset at each stretch's
start), its torch threads and its scores; a thread here also samples the resident memory of the whole
process tree every 0.5 s. One sweep per launcher: the peaks are read from the kernel, not timed. Wall
times are recorded but are no speed comparison: parallel jobs share the machine's cores.
Writes benchmarks/results/bench_launchers.json (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import _common as common
from tqdm.auto import tqdm

BENCH = "bench_launchers"
ARMS = ["zero_shot", "rag", "lora"]  # in this order: the in-process sweep's later arms start after earlier ones
SWEEP = [
    "+exp=medical_reports",
    f"arm={','.join(ARMS)}",
    "task.limits.test=20",
    "training.max_steps=10",
    "generation.latency_sample=2",
]
N_JOBS = 3
LAUNCHERS: dict[str, list[str]] = {
    "basic": [],
    "submitit_local": ["hydra/launcher=submitit_local"],
    "joblib": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={N_JOBS}"],
}
MEMORY = ["cost_rss_at_start_mb", "cost_peak_rss_mb", "cost_train_peak_rss_mb", "cost_generate_peak_rss_mb"]
SCORES = ["field_accuracy", "format_compliance", "protocol_fact_accuracy", "rouge_l"]
KEPT = [*MEMORY, "wall_s", "torch_threads", "processes", "launcher", "status", "started", "finished", *SCORES]
SHARED_LOAD = 0.5  # a 1-minute load average above this: other work shared the machine


def fresh_cache(folder: Path) -> Path:
    """An empty artefact cache at `folder` whose `models` links to the user's converted models."""
    from ragft.record.cache import cache_root

    models = cache_root() / "models"
    models.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models").symlink_to(models, target_is_directory=True)
    return folder


def run_env(cache: Path) -> dict[str, str]:
    """The environment of a `python -m ragft.run` child: offline, unbuffered, its own artefact cache."""
    from ragft.record.cache import CACHE_ENV

    return {**os.environ, CACHE_ENV: str(cache), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


class TreeMemory:
    """Samples the summed resident memory of a process and all its descendants every `interval` s
    (shared pages count once per process, and a peak shorter than the interval can be missed)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval, self.peak_mb, self.samples = pid, interval, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak_mb, self.samples = max(self.peak_mb, total / 2**20), self.samples + 1
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=5)
        return {"tree_peak_rss_mb": round(self.peak_mb, 1), "tree_samples": self.samples}


def run_sweep(launcher: str, work: Path, tiny: bool, timeout: float) -> dict[str, Any]:
    """The sweep under `launcher` in a child process with a fresh cache; its wall time, exit code and
    the process tree's sampled peak. The child's output goes to `<work>/<launcher>.log`."""
    results = work / launcher
    overrides = [*SWEEP, *(["+debug=smoke"] if tiny else []), *LAUNCHERS[launcher], f"paths.results={results}"]
    command = [sys.executable, "-m", "ragft.run", "-m", *overrides]
    env = run_env(fresh_cache(work / f"{launcher}-cache"))
    log_path = work / f"{launcher}.log"
    started, load_start = time.perf_counter(), os.getloadavg()
    with log_path.open("w") as log:
        child = subprocess.Popen(command, cwd=common.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        tree = TreeMemory(child.pid)
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.wait()
    return {
        "launcher": launcher,
        "overrides": [*overrides[len(SWEEP) : -1], f"paths.results=<tmp>/{launcher}"],
        "returncode": code,
        "sweep_wall_s": round(time.perf_counter() - started, 1),
        "load_average": {"start": load_start, "end": os.getloadavg()},
        **tree.stop(),
        "log_tail": log_path.read_text(errors="replace")[-1500:] if code else "",
        "arms": arm_rows(read_rows(results)),
    }


def read_rows(results: Path) -> list[dict[str, str]]:
    """The rows of the experiment's runs.csv under `results` (none when the sweep wrote none)."""
    tables = sorted(results.glob("*/runs.csv"))
    if not tables:
        return []
    with tables[0].open(newline="") as handle:
        return list(csv.DictReader(handle))


def value(text: str | None) -> Any:
    """A runs.csv cell as a number where it is one, else as text (None for an empty cell)."""
    if text is None or text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text else number


def arm_rows(rows: Sequence[Mapping[str, str]]) -> dict[str, dict[str, Any]]:
    """Per arm, the kept columns of its row (the last one where an arm has several)."""
    return {row["arm"]: {key: value(row.get(key)) for key in KEPT} for row in rows}


def same_scores(per_launcher: Mapping[str, Mapping[str, Mapping[str, Any]]], tol: float = 1e-9) -> dict[str, Any]:
    """Whether every launcher's run of each arm has the same score means, and which (arm, score) differ."""
    differing = []
    for arm in ARMS:
        for score in SCORES:
            values = [runs.get(arm, {}).get(score) for runs in per_launcher.values()]
            if all(v is None for v in values):
                continue
            if any(v is None for v in values) or max(values) - min(values) > tol:
                differing.append({"arm": arm, "score": score, "values": dict(zip(per_launcher, values))})
    return {"same_metrics": not differing, "differing": differing, "compared": SCORES, "tolerance": tol}


def memory_summary(per_launcher: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Per launcher and arm: each memory figure, and its difference from the basic launcher's run of the arm."""
    basic = per_launcher.get("basic", {})
    table: dict[str, Any] = {}
    for launcher, runs in per_launcher.items():
        table[launcher] = {}
        for arm in ARMS:
            row = runs.get(arm, {})
            figures = {key.removeprefix("cost_"): row.get(key) for key in MEMORY}
            figures["torch_threads"] = row.get("torch_threads")
            if launcher != "basic":
                figures["peak_minus_basic_mb"] = difference(row.get("cost_peak_rss_mb"), basic.get(arm, {}))
            table[launcher][arm] = figures
        peaks = [r.get("cost_peak_rss_mb") for r in runs.values() if r.get("cost_peak_rss_mb") is not None]
        table[launcher]["sum_of_run_peaks_mb"] = round(sum(peaks), 1) if peaks else None
    return table


def difference(peak: Any, basic_row: Mapping[str, Any]) -> float | None:
    other = basic_row.get("cost_peak_rss_mb")
    if peak is None or other is None or (isinstance(peak, float) and math.isnan(peak)):
        return None
    return round(float(peak) - float(other), 1)


def summarise(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The memory table, the score check, and each sweep's wall time (labelled: not a speed claim)."""
    per_launcher = {r["launcher"]: r["arms"] for r in records}
    walls = {
        r["launcher"]: {"sweep_wall_s": r["sweep_wall_s"], "tree_peak_rss_mb": r["tree_peak_rss_mb"]} for r in records
    }
    return {
        "memory_mb": memory_summary(per_launcher),
        **same_scores(per_launcher),
        "all_finished": all(r["returncode"] == 0 for r in records)
        and all(row.get("status") == "finished" for r in records for row in r["arms"].values())
        and all(set(ARMS) <= set(r["arms"]) for r in records),
        "sweeps": walls,
        "wall_note": "recorded, not compared: parallel jobs share the machine's cores, so a job's wall time "
        "under a parallel launcher is not the time it takes alone, and a sweep's is not a speed claim",
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launchers", nargs="+", default=list(LAUNCHERS), choices=list(LAUNCHERS))
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one sweep may take")
    parser.add_argument("--work", default=None, help="folder for the sweeps' results and caches (default: temp)")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (+debug=smoke): a smoke run")
    parser.add_argument("--merge", default=None, help="an earlier record: its other launchers' sweeps are kept")
    parser.add_argument("--merge-reason", default="", help="why those sweeps were not run again (recorded)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_launchers.json)")
    return parser.parse_args(argv)


def merged(records: list[dict[str, Any]], args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict | None]:
    """`records` with the sweeps of the other launchers from the earlier record `args.merge`, in the order
    of LAUNCHERS, and a note naming what was kept, from when, and why."""
    if not args.merge:
        return records, None
    earlier = json.loads(Path(args.merge).read_text())
    kept = [r for r in earlier["repeats"] if r["launcher"] not in args.launchers]
    by_launcher = {r["launcher"]: r for r in [*kept, *records]}
    note = {"launchers": [r["launcher"] for r in kept], "date": earlier["date"], "git": earlier["git"],
            "load_average": earlier["settings"]["load_average"], "reason": args.merge_reason}  # fmt: skip
    return [by_launcher[name] for name in LAUNCHERS if name in by_launcher], note


def main(argv: Sequence[str] | None = None) -> Path:
    import tempfile

    args = parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="ragft-launchers-"))
    load_start = os.getloadavg()
    records = []
    for launcher in tqdm(args.launchers, desc="sweeps", unit="launcher"):
        records.append(run_sweep(launcher, work, args.tiny, args.timeout))
        print(f"{launcher}: exit {records[-1]['returncode']}, {records[-1]['sweep_wall_s']} s", flush=True)
    load_end = os.getloadavg()
    records, merge_note = merged(records, args)
    settings = {
        "sweep": SWEEP,
        "launchers": {r["launcher"]: LAUNCHERS[r["launcher"]] for r in records},
        "merged_from_earlier_record": merge_note,
        "n_jobs": {"joblib": N_JOBS},
        "repeats": 1,
        "why_one_repeat": "memory peaks are the kernel's high-water mark (VmHWM) of each run's stretch, read "
        "by the run itself rather than timed, so the machine's load does not enter them; one sweep per launcher "
        "gives no spread, so a difference of ~100 MB between launchers is not shown to exceed run-to-run variation",
        "cache": "a fresh artefact cache per launcher sharing only the converted models (nothing reused)",
        "memory": "runs.csv cost_* columns (MB): rss_at_start (after freed memory was released), peak "
        "(whole run), train_peak, generate_peak; tree_peak_rss_mb: this script's 0.5 s samples of the "
        "sweep's whole process tree",
        "tiny": args.tiny,
        "work": "a temporary folder",
        "load_average": {
            "start": load_start,
            "end": load_end,
            "shared_machine": max(load_start[0], load_end[0]) > SHARED_LOAD,
        },
    }
    summary = summarise(records)
    path = common.result_path(BENCH, args.out, args.tiny)
    return common.write_result(path, BENCH, settings, records, summary)


if __name__ == "__main__":
    main()
