"""The cost of resumability with the default model (SmolLM2-135M, LoRA as conf/adaptation/lora.yaml).

    python benchmarks/bench_resume.py            # (a) 8 steps x 2 arms x 3 repeats, (b) 3 kills
    python benchmarks/bench_resume.py --tiny --resume-steps 40   # tiny random models (+debug=smoke)

(a) Checkpoint overhead, in this process: `train_adapter` on the medical_reports training notes
(zero-shot prompts, batch 8) with `training.checkpoint_steps=null` against `4`, each run in an empty
artefact cache with a work folder for its checkpoints, one untimed one-step run per arm first, then the
arms alternated, same torch threads. Time is ragft's recorded `train_s` (the whole `Trainer.train`, the
last save included); a callback times each save (a step's end to `on_save`); the last checkpoint's
files are measured on disk.

(b) Resume overhead, in child processes with their own artefact caches: `python -m ragft.run arm=lora
... training.max_steps=12 training.checkpoint_steps=4` killed (SIGKILL) once checkpoint 4 is whole,
then run again; and once uninterrupted, for the losses and a start-up that resumes nothing. The
children's output is timestamped as it comes: the Trainer's progress bar at 0/12 is training
(re)starting, after model load, prompts and checkpoint restore. Writes benchmarks/results/bench_resume.json.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import _common as common
from bench_launchers import SHARED_LOAD, fresh_cache, run_env
from tqdm.auto import tqdm

BENCH = "bench_resume"
TINY = ["+debug=smoke"]
ARMS = {"no_checkpoints": None, "checkpoint_every_4": 4}
FILE_KINDS = {"adapter": ("adapter_model.safetensors", "adapter_config.json"), "optimizer": ("optimizer.pt",),
              "scheduler": ("scheduler.pt",), "rng": ("rng_state.pth", "ragft_epoch_rng.pt")}  # fmt: skip


# --- (a) checkpoint overhead, in this process -----------------------------------------------------------------


@contextmanager
def save_timer() -> Iterator[dict[str, dict[int, float]]]:
    """Every Trainer created in the block records when each optimizer step ended and when each save
    ended (`on_save` follows `_save_checkpoint`, ragft's progress file included)."""
    from transformers import TrainerCallback
    from transformers import trainer as trainer_module

    events: dict[str, dict[int, float]] = {"step_end": {}, "save": {}}

    class SaveTimer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
            events["step_end"][state.global_step] = time.perf_counter()

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
            events["save"][state.global_step] = time.perf_counter()

    timer, defaults = SaveTimer(), trainer_module.DEFAULT_CALLBACKS
    defaults.append(timer)
    try:
        yield events
    finally:
        defaults.remove(timer)


def checkpoint_bytes(folder: Path) -> dict[str, Any]:
    """The newest `checkpoint-<step>` under `folder`: its bytes by kind (adapter, optimizer, scheduler,
    RNG, other) and per file."""
    found = sorted(folder.rglob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not found:
        return {"total": 0, "files": {}}
    files = {p.name: p.stat().st_size for p in found[-1].iterdir() if p.is_file()}
    kinds = {kind: sum(files.get(name, 0) for name in names) for kind, names in FILE_KINDS.items()}
    kinds["other"] = sum(files.values()) - sum(kinds.values())
    return {"checkpoint": found[-1].name, "total": sum(files.values()), **kinds, "files": files}


def training_run(cfg: Any, features: list[dict[str, list[int]]], steps: int, every: int | None) -> dict[str, Any]:
    """One `train_adapter` run of `steps` steps, saving every `every` steps (None: never), in an empty
    artefact cache: its recorded training time and tokens, each save's seconds, the checkpoint's bytes."""
    from ragft.adapt.sft import train_adapter
    from ragft.models.loading import load_generator

    run_cfg = copy.deepcopy(cfg)
    run_cfg.training.max_steps, run_cfg.training.checkpoint_steps = steps, every
    generator = load_generator(run_cfg.generator)
    with common.empty_artefact_cache() as cache, save_timer() as events:
        cost = train_adapter(
            generator, run_cfg.adaptation.method, run_cfg.training, features, checkpoints=cache / "work"
        ).cost
        size = checkpoint_bytes(cache / "work")
    if cost.adapter_reused or cost.train_steps != steps:
        raise RuntimeError(f"trained {cost.train_steps} steps (reused: {cost.adapter_reused}), not {steps}")
    saves = {step: done - events["step_end"][step] for step, done in events["save"].items()}  # step end to save end
    del generator
    gc.collect()
    return {"seconds": cost.train_s, "tokens": cost.train_tokens, "train_loss": cost.train_loss, "saves": len(saves),
            "save_s": [saves[s] for s in sorted(saves)], "checkpoint_bytes": size}  # fmt: skip


def overhead_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per arm the spread of training seconds; the paired time ratio (checkpointing / not) per repeat;
    the seconds of every save; the checkpoint's bytes; the same losses in both arms."""
    on, off = "checkpoint_every_4", "no_checkpoints"
    seconds = {arm: common.arm_values(records, arm, "seconds") for arm in (on, off)}
    saves = [s for r in records for s in r["arms"][on]["save_s"]]
    extra = [a - b for a, b in zip(seconds[on], seconds[off])]
    per_save = [x / max(1, r["arms"][on]["saves"]) for x, r in zip(extra, records)]
    return {
        "train_s": {arm: common.spread(values) for arm, values in seconds.items()},
        "time_ratio_checkpoint_over_none": common.paired_ratios(seconds[on], seconds[off]),
        "extra_s_per_run": common.spread(extra),
        "extra_s_per_save_from_difference": common.spread(per_save),
        "save_s": common.spread(saves) if saves else None,
        "saves_per_run": records[0]["arms"][on]["saves"],
        "checkpoint_bytes": records[-1]["arms"][on]["checkpoint_bytes"],
        "same_loss_every_repeat": all(r["arms"][on]["train_loss"] == r["arms"][off]["train_loss"] for r in records),
    }


def overhead_benchmark(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from bench_training import training_features

    from ragft.models.loading import load_generator

    cfg = common.compose([*(TINY if args.tiny else []), "arm=lora", f"training.batch_size={args.batch_size}"])
    features = training_features(cfg, load_generator(cfg.generator).tokenizer, args.steps * args.batch_size)
    arms = {name: (lambda every=every: training_run(cfg, features, args.steps, every)) for name, every in ARMS.items()}
    warmups = {name: (lambda every=every: training_run(cfg, features, 1, every and 1)) for name, every in ARMS.items()}
    records = common.run_repeats(arms, args.repeats, warmups)
    facts = {
        "examples": len(features),
        "mean_tokens_per_example": sum(len(f["input_ids"]) for f in features) / len(features),
    }
    return records, facts


# --- (b) resume overhead, in child processes --------------------------------------------------------------------


class Child:
    """`python -m ragft.run <overrides>` with its own artefact cache; its output kept with the time each
    piece arrived (seconds since the spawn)."""

    def __init__(self, overrides: Sequence[str], cache: Path) -> None:
        command = [sys.executable, "-m", "ragft.run", *overrides]
        self.chunks: list[tuple[float, str]] = []
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, cwd=common.ROOT, env=run_env(cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := os.read(self.process.stdout.fileno(), 65536):
            self.chunks.append((time.perf_counter() - self.started, chunk.decode(errors="replace")))

    def finish(self, timeout: float) -> float:
        """Wait for the exit (an error if it failed); the wall seconds since the spawn."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        if code != 0:
            raise RuntimeError(f"exit {code}:\n{self.output[-3000:]}")
        return time.perf_counter() - self.started

    def kill(self) -> float:
        """SIGKILL it; the wall seconds since the spawn at the kill."""
        self.process.kill()
        at = time.perf_counter() - self.started
        self.process.wait()
        self._reader.join(timeout=10)
        return at

    output = property(lambda self: "".join(text for _, text in self.chunks))


def first_step_times(chunks: Sequence[tuple[float, str]], steps: int) -> dict[int, float]:
    """When the Trainer's progress bar first showed each step count `n/steps` (seconds since the spawn)."""
    pattern, text, seen = re.compile(rf"(?<![\d/])(\d+)/{steps} \["), "", {}
    for at, chunk in chunks:
        start = max(0, len(text) - 40)
        text += chunk
        for match in pattern.finditer(text, start):
            seen.setdefault(int(match.group(1)), at)
    return seen


def whole_checkpoint(results: Path, step: int) -> Path | None:
    """The progress file (ragft writes it last) of a checkpoint at `step` or later, once it holds its JSON."""
    for path in results.glob("*/.lora-*.partial/checkpoints/*/checkpoint-*/ragft_progress.json"):
        if int(path.parent.name.split("-")[1]) >= step:
            try:
                json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            return path
    return None


def wait_for_checkpoint(child: Child, results: Path, step: int, timeout: float) -> Path:
    """Block until checkpoint `step` (or a later one, where steps are faster than this poll) is whole."""
    deadline = time.monotonic() + timeout
    while (found := whole_checkpoint(results, step)) is None:
        if child.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no checkpoint {step} (exit {child.process.poll()}):\n{child.output[-3000:]}")
        time.sleep(0.05)
    return found


def run_record(results: Path) -> dict[str, Any]:
    (path,) = results.glob("*/lora-*/record.json")
    return json.loads(path.read_text())


def child_facts(child: Child, wall_s: float, record: Mapping[str, Any], steps: int) -> dict[str, Any]:
    """What a finished child's output and record say: wall time, when training (re)started and each
    step's first showing, the recorded training and stage times, the losses."""
    shown = first_step_times(child.chunks, steps)
    training, provenance = record["cost"]["training"], record["provenance"]
    kept = ("train_s", "resumed_from_step", "train_steps", "train_tokens", "train_loss", "loss_history")
    return {
        "wall_s": wall_s,
        "to_training_start_s": shown.get(0),
        "step_shown_s": {str(k): v for k, v in sorted(shown.items())},
        **{key: training.get(key) for key in kept},
        "stage_s": record["cost"]["stage_s"],
        **{key: provenance.get(key) for key in ("resumed", "torch_threads")},
    }


def resume_overrides(args: argparse.Namespace, results: Path) -> list[str]:
    return [*(TINY if args.tiny else []), "arm=lora", f"task.limits.train={args.train}",
            f"training.max_steps={args.resume_steps}", f"training.checkpoint_steps={args.kill_after}",
            "training.logging_steps=1", "task.limits.test=4", "generation.latency_sample=0", f"paths.results={results}"]  # fmt: skip


def uninterrupted_run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    results = work / "reference" / "results"
    child = Child(resume_overrides(args, results), fresh_cache(work / "reference" / "cache"))
    wall = child.finish(args.timeout)
    return child_facts(child, wall, run_record(results), args.resume_steps)


def killed_and_resumed(args: argparse.Namespace, work: Path, repeat: int) -> dict[str, Any]:
    """One repeat: a run killed once checkpoint `kill_after` is whole, then the same command again."""
    results, cache = work / f"repeat-{repeat}" / "results", fresh_cache(work / f"repeat-{repeat}" / "cache")
    first = Child(resume_overrides(args, results), cache)
    progress = wait_for_checkpoint(first, results, args.kill_after, args.timeout)
    killed_wall = first.kill()
    lost_s = time.time() - progress.stat().st_mtime
    killed_shown = first_step_times(first.chunks, args.resume_steps)
    second = Child(resume_overrides(args, results), cache)
    wall = second.finish(args.timeout)
    return {
        "repeat": repeat,
        "killed": {"wall_s": killed_wall, "to_training_start_s": killed_shown.get(0),
                   "last_step_shown": max(killed_shown, default=None), "lost_s": lost_s,
                   "checkpoint_seen": progress.parent.name},
        "resumed": child_facts(second, wall, run_record(results), args.resume_steps),
    }  # fmt: skip


def max_relative_difference(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The largest |a - b| / |b| over paired values (None when the lengths differ)."""
    if len(a) != len(b):
        return None
    return max((abs(x - y) / abs(y) if y else abs(x - y) for x, y in zip(a, b)), default=0.0)


def resume_summary(repeats: Sequence[Mapping[str, Any]], reference: Mapping[str, Any]) -> dict[str, Any]:
    """Spreads over the repeats: the work lost, the restart, the interruption's whole cost, and how the
    resumed training's losses and counts compare with the uninterrupted run's."""
    resumed = [r["resumed"] for r in repeats]
    restart = [r["to_training_start_s"] for r in resumed if r["to_training_start_s"] is not None]
    fresh = [r["killed"]["to_training_start_s"] for r in repeats if r["killed"]["to_training_start_s"] is not None]
    whole = [r["killed"]["wall_s"] + r["resumed"]["wall_s"] - reference["wall_s"] for r in repeats]
    diffs = [max_relative_difference(r["loss_history"], reference["loss_history"]) for r in resumed]
    return {
        "repeats": len(repeats),
        "resumed_from_step": [r["resumed_from_step"] for r in resumed],
        "lost_s": common.spread([r["killed"]["lost_s"] for r in repeats]),
        "restart_to_training_s": common.spread(restart) if restart else None,
        "fresh_start_to_training_s": common.spread(fresh) if fresh else None,
        "reference_to_training_s": reference["to_training_start_s"],
        "resumed_train_s": common.spread([r["train_s"] for r in resumed]),
        "reference_train_s": reference["train_s"],
        "interruption_cost_s": common.spread(whole),
        "loss_history_max_rel_diff": max((d for d in diffs if d is not None), default=None),
        "loss_history_same_length": all(d is not None for d in diffs),
        "train_loss_max_rel_diff": max_relative_difference(
            [r["train_loss"] for r in resumed], [reference["train_loss"]] * len(resumed)
        ),
        "same_steps_and_tokens": all(r[k] == reference[k] for r in resumed for k in ("train_steps", "train_tokens")),
    }


def resume_benchmark(args: argparse.Namespace, work: Path) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """The uninterrupted run, then up to `kills` killed-and-resumed repeats: a repeat starts only while the
    part's time budget holds another one like the last (at least one runs); why fewer ran, if they did."""
    started = time.perf_counter()
    reference = uninterrupted_run(args, work)
    repeats: list[dict[str, Any]] = []
    for index in tqdm(range(args.kills), desc="kill and resume"):
        spent = time.perf_counter() - started
        if repeats and spent + spent / (len(repeats) + 1) > args.resume_budget:
            return (
                reference,
                repeats,
                f"{len(repeats)} of {args.kills}: another would pass --resume-budget {args.resume_budget:.0f} s",
            )
        repeats.append(killed_and_resumed(args, work, index))
    return reference, repeats, None


# --- the whole benchmark ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="(a) training steps per run")
    parser.add_argument("--batch-size", type=int, default=8, help="(a) training batch")
    parser.add_argument("--repeats", type=int, default=3, help="(a) runs per arm, at least 3")
    parser.add_argument("--kills", type=int, default=3, help="(b) killed-and-resumed repeats")
    parser.add_argument("--train", type=int, default=48, help="(b) training notes (task.limits.train)")
    parser.add_argument("--resume-steps", type=int, default=12, help="(b) training.max_steps")
    parser.add_argument("--kill-after", type=int, default=4, help="(b) checkpoint_steps; killed after the first")
    parser.add_argument("--threads", type=int, default=None, help="(a) torch threads (default: physical cores)")
    parser.add_argument("--timeout", type=float, default=3600, help="(b) seconds a child may take")
    parser.add_argument("--resume-budget", type=float, default=1800, help="(b) seconds before no repeat starts")
    parser.add_argument("--parts", nargs="+", default=["overhead", "resume"], choices=["overhead", "resume"])
    parser.add_argument("--tiny", action="store_true", help="tiny random models (+debug=smoke): a smoke run")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_resume.json)")
    args = parser.parse_args(argv)
    common.check_repeats(args.repeats)
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    import tempfile

    args = parse_args(argv)
    load = {"start": os.getloadavg()}
    threads = common.set_threads(args.threads or common.default_threads())
    records: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    if "overhead" in args.parts:
        overhead, facts = overhead_benchmark(args)
        records += [{"part": "overhead", **r} for r in overhead]
        summary["overhead"] = {**overhead_summary(overhead), **facts}
    if "resume" in args.parts:
        reference, repeats, note = resume_benchmark(args, Path(tempfile.mkdtemp(prefix="ragft-resume-")))
        records += [{"part": "resume_reference", **reference}, *({"part": "resume", **r} for r in repeats)]
        summary["resume"] = {**resume_summary(repeats, reference), "stopped": note}
    load["end"] = os.getloadavg()
    settings = settings_of(args, threads, load)
    return common.write_result(common.result_path(BENCH, args.out, args.tiny), BENCH, settings, records, summary)


def settings_of(args: argparse.Namespace, threads: int, load: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "overhead": {"arms": {name: f"training.checkpoint_steps={every}" for name, every in ARMS.items()},
                     "steps": args.steps, "batch_size": args.batch_size, "repeats": args.repeats, "threads": threads,
                     "warmup": "one untimed one-step run per arm (the checkpointing arm saving after it)",
                     "seconds": "train_s as ragft records it: the whole Trainer.train, the last save included",
                     "save_s": "from a step's on_step_end to the Trainer's on_save (the save, ragft's progress file "
                     "and the old checkpoint's removal)"},
        "resume": {"command": "python -m ragft.run " + " ".join(resume_overrides(args, Path("<tmp>"))),
                   "kills": args.kills, "killed_after_checkpoint": args.kill_after, "signal": "SIGKILL",
                   "lost_s": "the killed attempt's work after its checkpoint's progress file was written (the "
                   "file's mtime to the kill); it is redone by the re-run",
                   "restart_to_training_s": "the re-run's spawn to its Trainer's progress bar at 0 steps: imports, "
                   "model load, prompts, adapter, checkpoint restore",
                   "interruption_cost_s": "killed attempt's wall + re-run's wall - the uninterrupted run's wall",
                   "logging_steps": "1, so that the loss of every step is compared; with logging_steps not dividing "
                   "checkpoint_steps (e.g. 5 and 4) the first loss logged after a resume averages only the steps "
                   "since the checkpoint (the Trainer restarts its logging window there), so loss_history would "
                   "differ at that entry though the training is the same (read from transformers' Trainer, not "
                   "measured here)", "children": "each its own artefact cache sharing only the converted models"},
        "tiny": args.tiny,
        "load_average": {**load, "shared_machine": max(load["start"][0], load["end"][0]) > SHARED_LOAD},
    }  # fmt: skip


if __name__ == "__main__":
    main()
