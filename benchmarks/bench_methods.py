"""Training throughput and memory of adaptation methods against LoRA, in the same run.

    python benchmarks/bench_methods.py                     # lora, full, dora on SmolLM2-135M (about 7-8 min on 2 cores)
    python benchmarks/bench_methods.py --methods lora qlora full dora ia3 prefix ptuning prompt   # every method
    python benchmarks/bench_methods.py --tiny              # tiny random model: under a minute

There is no plain baseline here: every method trains through ragft's own path (`train_adapter`, in an
empty artefact cache) on the same medical_reports features, with the same batch, steps, seed and torch
threads, and its own default learning rate. Each (method, repeat) runs in a fresh process, so its peak
memory is its own and not a high-water mark left by the method before it; the first optimizer step of
each run is a warm-up and is not timed. The methods alternate across repeats (A B C, C B A, A B C) and
each method's throughput is divided by LoRA's of the same repeat. Tokens are the non-padding prompt +
response tokens of the timed steps. Writes benchmarks/results/bench_methods.json (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from functools import partial
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import (
    check_repeats,
    compose,
    default_threads,
    empty_artefact_cache,
    print_summary,
    result_path,
    run_repeats,
    set_threads,
    spread,
    step_timer,
    summarise,
    timed_steps,
    write_result,
)

BENCH = "bench_methods"
TINY = ["+debug=smoke"]  # tiny random generator (conf/debug/smoke.yaml)
BASELINE = "lora"


def method_overrides(method: str, steps: int, batch_size: int | None, tiny: bool, extra: list[str]) -> list[str]:
    """The overrides one method's run is composed from: its adaptation preset, warm-up + timed steps."""
    overrides = [*(TINY if tiny else []), f"adaptation={method}", f"training.max_steps={steps + 1}"]
    if batch_size:
        overrides.append(f"training.batch_size={batch_size}")
    return [*overrides, "training.warmup_steps=0", *extra]


def train_method(overrides: list[str], examples: int | None, threads: int) -> dict[str, Any]:
    """One method's training through ragft's path, in the calling process: per-step times (the first
    step untimed), the training's peak memory as ragft records it, and the parameter counts."""
    from bench_training import training_features

    from ragft.adapt.sft import train_adapter
    from ragft.models.loading import load_generator

    set_threads(threads)
    cfg = compose(overrides)
    generator = load_generator(cfg.generator, cfg.adaptation.get("quantization"))
    features = training_features(cfg, generator.tokenizer, examples or cfg.training.max_steps * cfg.training.batch_size)
    with empty_artefact_cache(), step_timer() as steps:
        cost = train_adapter(generator, cfg.adaptation.method, cfg.training, features).cost
    if cost.adapter_reused:
        raise RuntimeError("train_adapter reused a cached training: nothing was timed.")
    return {
        **timed_steps(steps),
        "memory": asdict(cost.memory),
        "trainable_params": cost.trainable_params,
        "total_params": cost.total_params,
        "train_loss": cost.train_loss,
        "ragft_train_s": cost.train_s,
        "examples": len(features),
        "dtype": str(generator.model.dtype),
    }


def in_own_process(overrides: list[str], examples: int | None, threads: int) -> dict[str, Any]:
    """`train_method` in a fresh process, so that its peak memory is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(train_method, overrides, examples, threads).result()


def memory_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method, the spread of every numeric memory figure ragft recorded (peak RSS, RSS at start, ...)."""
    summary: dict[str, Any] = {}
    for arm in records[0]["arms"]:
        memories = [r["arms"][arm]["memory"] for r in records]
        keys = [k for k, v in memories[0].items() if isinstance(v, (int, float))]
        summary[arm] = {k: spread([m[k] for m in memories]) for k in keys}
    return summary


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["lora", "full", "dora"], help="adaptation presets")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per run, after one warm-up step")
    parser.add_argument("--examples", type=int, default=None, help="training notes (default (steps+1) x batch)")
    parser.add_argument("--batch-size", type=int, default=None, help="training batch (default: config, 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method, at least 3")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (+debug=smoke): a smoke run")
    parser.add_argument("--overrides", nargs="*", default=[], help="further Hydra overrides")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_methods.json)")
    args = parser.parse_args()
    check_repeats(args.repeats)
    args.methods = [BASELINE, *dict.fromkeys(m for m in args.methods if m != BASELINE)]
    return args


def main() -> None:
    args = parse_args()
    threads = set_threads(args.threads or default_threads())
    runs = {m: method_overrides(m, args.steps, args.batch_size, args.tiny, args.overrides) for m in args.methods}
    records = run_repeats(
        {m: partial(in_own_process, o, args.examples, threads) for m, o in runs.items()}, args.repeats
    )
    summary = summarise(records, {f"{m}/{BASELINE}": (m, BASELINE) for m in args.methods if m != BASELINE})
    summary["memory"] = memory_summary(records)
    summary["trainable_params"] = {m: records[0]["arms"][m]["trainable_params"] for m in args.methods}
    first = records[0]["arms"][BASELINE]
    settings = {
        "arms": {
            m: f"ragft.adapt.sft.train_adapter, adaptation={m}, fresh process, empty artefact cache" for m in runs
        },
        "tokens": "non-padding prompt + response tokens of the timed steps (Trainer's num_input_tokens_seen)",
        "memory": "ragft's own record of the training (peak RSS sampled during trainer.train()), per process",
        "timed_steps_per_run": args.steps,
        "warmup": "the first optimizer step of every run (each run a fresh process)",
        "examples": first["examples"],
        "repeats": args.repeats,
        "threads": threads,
        "dtype": first["dtype"],
        "tiny": args.tiny,
        "overrides": runs,
    }
    print_summary(summary)
    for method, memory in summary["memory"].items():
        print(f"{method:8s} memory MB (median): " + ", ".join(f"{k} {v['median']:.0f}" for k, v in memory.items()))
    write_result(result_path(BENCH, args.out, args.tiny), BENCH, settings, records, summary)


if __name__ == "__main__":
    main()
