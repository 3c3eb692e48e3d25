"""What every benchmark shares, so that each comparison is run, summarised and recorded the same way.

- `run_repeats`: one warm-up per arm, then the arms timed in alternating order (A B, B A, A B, ...), so
  a drift in machine load falls on every arm alike;
- `spread` / `summarise` / `paired_ratios`: the median with min, max, quartiles and sd of each arm, and
  each ratio computed per repeat (the two arms of one repeat ran back to back) before its median is
  taken -- not a ratio of medians, which pairs numbers measured minutes apart;
- `write_result`: the raw timings of every repeat, the settings, the machine, the commit and the date
  in one JSON file, so a figure quoted anywhere can be traced to the run that produced it;
- `set_threads`, `compose`, `empty_artefact_cache`, `step_timer`: fixed torch threads, the composed
  config, a cold artefact cache for a training that must really train, and per-step training times.

Heavy libraries (torch, transformers, hydra) are imported inside the functions that need them, so the
statistics can be imported and tested without them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
RESULTS = Path(__file__).resolve().parent / "results"
MIN_REPEATS = 3
STARTED = time.perf_counter()  # the benchmark's whole wall time goes into its record

#: one timed run of one arm: at least "seconds" and "tokens"; any further keys are kept as raw data
Measurement = dict[str, Any]


# --- running ------------------------------------------------------------------------------------------


def alternating_orders(arms: Sequence[str], repeats: int) -> list[list[str]]:
    """The order of the arms in each repeat: as given in even repeats, reversed in odd ones (A B C, C B A,
    A B C, ...), so that no arm always runs first, after a warm machine, or last."""
    return [list(arms) if r % 2 == 0 else list(reversed(arms)) for r in range(repeats)]


def check_repeats(repeats: int) -> int:
    """`repeats`, or a ValueError naming the minimum: fewer repeats give no spread worth quoting."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"--repeats {repeats}: at least {MIN_REPEATS} repeats are needed for a median and spread.")
    return repeats


def run_repeats(
    arms: Mapping[str, Callable[[], Measurement]],
    repeats: int,
    warmups: Mapping[str, Callable[[], Any]] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Each arm's warm-up (untimed, results dropped), then `repeats` rounds of every arm in alternating
    order. Returns one record per repeat: its order and each arm's measurement with tokens/s added."""
    check_repeats(repeats)
    for name, warmup in (warmups or {}).items():
        log(f"warm-up: {name}")
        warmup()
    records = []
    for repeat, order in enumerate(alternating_orders(list(arms), repeats)):
        measured: dict[str, Measurement] = {}
        for name in order:
            result = dict(arms[name]())
            result["tokens_per_s"] = throughput(result)
            measured[name] = result
            log(f"repeat {repeat + 1}/{repeats} {name}: {result['tokens_per_s']:.1f} tokens/s")
        records.append({"repeat": repeat, "order": order, "arms": measured})
    return records


def throughput(measurement: Mapping[str, Any]) -> float:
    """Tokens per second of one measurement; a ValueError when it timed nothing."""
    if measurement["seconds"] <= 0:
        raise ValueError(f"a measurement took {measurement['seconds']} s: nothing was timed.")
    return float(measurement["tokens"]) / float(measurement["seconds"])


# --- statistics -----------------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """Median, min, max, quartiles (inclusive method: they lie between observed values), IQR, mean and sd."""
    if not values:
        raise ValueError("no values to summarise.")
    data = sorted(float(v) for v in values)
    q1, _, q3 = statistics.quantiles(data, n=4, method="inclusive") if len(data) > 1 else (data[0],) * 3
    return {
        "n": len(data),
        "median": statistics.median(data),
        "min": data[0],
        "max": data[-1],
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "mean": statistics.fmean(data),
        "sd": statistics.stdev(data) if len(data) > 1 else 0.0,
    }


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, Any]:
    """numerator[i] / denominator[i] for each repeat i, with the median and range of those ratios."""
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} values against {len(denominator)}: ratios pair repeats one to one.")
    ratios = [n / d for n, d in zip(numerator, denominator)]
    summary = spread(ratios)
    return {"per_repeat": ratios, "median": summary["median"], "min": summary["min"], "max": summary["max"]}


def arm_values(records: Sequence[Mapping[str, Any]], arm: str, key: str = "tokens_per_s") -> list[float]:
    """One arm's `key` in every repeat, in repeat order."""
    return [float(r["arms"][arm][key]) for r in records]


def summarise(
    records: Sequence[Mapping[str, Any]], ratios: Mapping[str, tuple[str, str]], unit: str = "tokens_per_s"
) -> dict[str, Any]:
    """Per arm: the spread of throughput, seconds and tokens; per named ratio (numerator arm, denominator
    arm): the ratio of their throughputs in each repeat, with its median and range."""
    arms = list(records[0]["arms"])
    per_arm = {arm: {key: spread(arm_values(records, arm, key)) for key in (unit, "seconds", "tokens")} for arm in arms}
    paired = {
        name: paired_ratios(arm_values(records, top, unit), arm_values(records, bottom, unit))
        for name, (top, bottom) in ratios.items()
    }
    return {"unit": unit, "arms": per_arm, "ratios": paired}


def print_summary(summary: Mapping[str, Any]) -> None:
    """The summary as a short table on stdout."""
    unit = summary["unit"]
    print(f"\n{'arm':28s} {unit + ' median':>18s} {'min':>8s} {'max':>8s} {'IQR':>8s}")
    for arm, values in summary["arms"].items():
        s = values[unit]
        print(f"{arm:28s} {s['median']:18.1f} {s['min']:8.1f} {s['max']:8.1f} {s['iqr']:8.1f}")
    for name, r in summary["ratios"].items():
        per = ", ".join(f"{x:.2f}" for x in r["per_repeat"])
        print(f"{name}: {r['median']:.2f}x (range {r['min']:.2f}-{r['max']:.2f}; per repeat {per})")


# --- the record -----------------------------------------------------------------------------------------


def git_state(root: Path = ROOT) -> dict[str, Any]:
    """The commit the benchmark ran at and whether the working tree differed from it (and where);
    None where `root` is not a git checkout."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in (status or "").splitlines() if line.strip()]
    return {
        "commit": commit.strip() if commit else None,
        "dirty": bool(changed) if status is not None else None,
        "changed_files": changed,
    }


def cpu_model() -> str:
    """The processor's name as the OS reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, Any]:
    """The machine and library versions a timing depends on."""
    import psutil
    import torch
    import transformers

    facts: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import peft

        facts["peft"] = peft.__version__
    except ImportError:
        pass
    return facts


def write_result(
    path: Path, bench: str, settings: Mapping[str, Any], records: Sequence[Any], summary: Mapping[str, Any]
) -> Path:
    """Write the benchmark's JSON record (settings, machine, commit, date, raw repeats, summary)."""
    record = {
        "bench": bench,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - STARTED, 1),
        "git": git_state(),
        "machine": machine_facts(),
        "settings": dict(settings),
        "summary": dict(summary),
        "repeats": list(records),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return path


def result_path(bench: str, out: str | None, tiny: bool) -> Path:
    """`--out`, else benchmarks/results/<bench>.json; a tiny run writes to the temp folder by default, so
    that a smoke run never replaces a committed record."""
    if out:
        return Path(out)
    if tiny:
        return Path(tempfile.gettempdir()) / "ragft-bench" / f"{bench}.json"
    return RESULTS / f"{bench}.json"


# --- environment ----------------------------------------------------------------------------------------


def default_threads() -> int:
    """Physical cores (torch's own default on most machines), at least 1."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def set_threads(threads: int) -> int:
    """Fix torch's intra-op threads for the whole run; returns the count torch reports back."""
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


def compose(overrides: Sequence[str]) -> Any:
    """The config `python -m ragft.run <overrides>` would run, composed in this process."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("ragft_root", lambda: str(ROOT), replace=True)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


@contextmanager
def empty_artefact_cache() -> Iterator[Path]:
    """Point ragft at an empty artefact cache for the block (so a training really trains rather than
    reusing an earlier run's adapter), sharing only the converted models; removed afterwards."""
    from ragft.record.cache import CACHE_ENV, cache_root

    models = cache_root() / "models"
    previous = os.environ.get(CACHE_ENV)
    scratch = Path(tempfile.mkdtemp(prefix="ragft-bench-"))
    if models.is_dir():
        (scratch / "models").symlink_to(models, target_is_directory=True)
    os.environ[CACHE_ENV] = str(scratch)
    try:
        yield scratch
    finally:
        if previous is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = previous
        shutil.rmtree(scratch, ignore_errors=True)  # the models link is removed, not followed


@contextmanager
def step_timer() -> Iterator[list[dict[str, float]]]:
    """Every HF Trainer created in the block records, for each optimizer step, the seconds since the
    previous step ended (the first: since training began) and the non-padding input tokens it consumed.

    The timer is added to transformers' default callbacks, so it reaches a Trainer that ragft builds
    inside its own training function exactly as it reaches the plain baseline's: both are timed by the
    same code, and the first (warm-up) step can be left out of the throughput."""
    from transformers import TrainerCallback
    from transformers import trainer as trainer_module

    steps: list[dict[str, float]] = []

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
            self.last, self.seen = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
            now, seen = time.perf_counter(), state.num_input_tokens_seen
            steps.append({"step": state.global_step, "seconds": now - self.last, "tokens": seen - self.seen})
            self.last, self.seen = now, seen

    timer = StepTimer()
    defaults: list[Any] = trainer_module.DEFAULT_CALLBACKS  # classes or instances, as Trainer(callbacks=...)
    defaults.append(timer)
    try:
        yield steps
    finally:
        defaults.remove(timer)


def timed_steps(steps: Sequence[Mapping[str, float]], warmup_steps: int = 1) -> Measurement:
    """Seconds and tokens of the steps after the first `warmup_steps`, with every step kept as raw data."""
    timed = steps[warmup_steps:]
    if not timed:
        raise ValueError(f"{len(steps)} training steps recorded: none left to time after {warmup_steps} warm-up.")
    if not all(s["tokens"] > 0 for s in timed):
        raise ValueError(
            "a step counted no tokens: the Trainer must count input tokens (include_num_input_tokens_seen)."
        )
    return {
        "seconds": sum(s["seconds"] for s in timed),
        "tokens": int(sum(s["tokens"] for s in timed)),
        "steps": [dict(s, warmup=i < warmup_steps) for i, s in enumerate(steps)],
    }
