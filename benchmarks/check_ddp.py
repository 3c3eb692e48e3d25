"""Data-parallel training against one process with the same global batch, on CPUs: the loss after every
step of `python -m ragft.run` under `torchrun --nproc_per_node=2` (gloo, batch 2 per process) and of
the same run in one process (batch 4), written to benchmarks/results/check_ddp.json.

Not a timing: two processes on a 2-core machine share its cores. What it records is whether the
distributed training computes the same training (the tiny model by default; `--real` uses the default
SmolLM2-135M, minutes). LoRA dropout is off, since each process draws its own dropout masks.

    python benchmarks/check_ddp.py            # tiny model, 6 steps: ~2 min on 2 cores
    python benchmarks/check_ddp.py --real --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import ROOT, result_path, write_result

COMMON = ("arm=lora", "adaptation.method.lora_dropout=0.0", "exp_name=ddp", "task.limits.test=6")


def run(results: Path, cache: Path, processes: int, batch: int, steps: int, real: bool) -> dict[str, Any]:
    """One run of `ragft.run` in `processes` processes; its record's training figures."""
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}"]
        if processes > 1
        else [sys.executable]
    )
    overrides = [
        *COMMON,
        *([] if real else ["+debug=smoke"]),
        f"training.batch_size={batch}",
        f"training.max_steps={steps}",
    ]
    env = {**os.environ, "RAGFT_CACHE": str(cache), "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // processes))}
    done = subprocess.run(
        [*launcher, "-m", "ragft.run", *overrides, f"paths.results={results}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    (record_file,) = (results / "ddp").glob("lora-*/record.json")
    record = json.loads(record_file.read_text())
    training = record["cost"]["training"]
    keep = ("loss_history", "train_loss", "train_steps", "train_tokens", "train_s")
    return {
        "processes": record["provenance"]["processes"],
        "batch_per_process": batch,
        **{k: training[k] for k in keep},
    }


def compare(two: dict[str, Any], one: dict[str, Any]) -> dict[str, Any]:
    """The largest relative difference of the per-step losses, and whether the same tokens were trained."""
    diffs = [abs(a - b) / abs(b) for a, b in zip(two["loss_history"], one["loss_history"])]
    return {
        "steps_compared": len(diffs),
        "max_relative_loss_difference": max(diffs),
        "same_tokens": two["train_tokens"] == one["train_tokens"],
        "tolerance": 1e-5,
        "within_tolerance": max(diffs) <= 1e-5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--real", action="store_true", help="the default SmolLM2-135M instead of the tiny model")
    parser.add_argument("--out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        two = run(root / "two", root / "cache-two", 2, 2, args.steps, args.real)
        one = run(root / "one", root / "cache-one", 1, 4, args.steps, args.real)
    summary = compare(two, one)
    print(json.dumps(summary, indent=2))
    settings = {
        "steps": args.steps,
        "model": "SmolLM2-135M" if args.real else "tiny",
        "global_batch": 4,
        "overrides": COMMON,
    }
    write_result(result_path("check_ddp", args.out, tiny=False), "check_ddp", settings, [two, one], summary)


if __name__ == "__main__":
    main()
