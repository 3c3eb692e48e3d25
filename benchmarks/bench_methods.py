"""Training throughput and memory of each adaptation method against LoRA, in the same run.

    python benchmarks/bench_methods.py --methods lora qlora full --examples 16 --steps 2

Every method trains the same medical_reports features (batch 8, its own default learning rate) for
the same number of steps through ragft's training path (`train_adapter`, each in an empty artefact
cache), each method in a fresh process after one untimed warm-up step of its own. Prints tokens/s,
seconds per step and the peak resident memory while training (with the memory when training began)
for each, and each method's throughput as a ratio to LoRA's. Run on an otherwise idle machine: methods
run one after the other, LoRA first and again last, so a drift in machine load shows as a difference
between the two LoRA rows.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")


def features_for(cfg, generator, examples: int) -> list:  # noqa: ANN001
    from ragft.adapt.sft import build_features
    from ragft.context.shots import ZeroShot
    from ragft.context.template import PromptTemplate
    from ragft.data.loading import load_task

    train = load_task(cfg.task.name, cfg.task.data, None, {"train": examples}).split("train")
    prompts = PromptTemplate.from_config(cfg.task.template).render_all(
        train, ZeroShot().build(train, None), generator.tokenizer
    )
    return build_features(
        generator.tokenizer, prompts, [e.reference for e in train], [e.id for e in train], cfg.training.max_length
    )


def empty_cache(models: Path) -> None:
    """Point ragft at an empty artefact cache, so that the next training really trains (the second LoRA
    row must not be the first one's cache hit), sharing only `models` (the converted GGUF generator)."""
    os.environ["RAGFT_CACHE"] = tempfile.mkdtemp(prefix="ragft-bench-")
    if models.is_dir():
        os.symlink(models, os.path.join(os.environ["RAGFT_CACHE"], "models"))


def train(method: str, steps: int, examples: int) -> dict:
    """One method's timed training, after an untimed one-step warm-up of the same method (first-call
    allocations), in the calling process."""
    from ragft.adapt.sft import train_adapter
    from ragft.models.loading import load_generator
    from ragft.record.cache import cache_root

    OmegaConf.register_new_resolver("ragft_root", lambda: os.path.dirname(CONF), replace=True)
    models = cache_root() / "models"  # the user's cache, before empty_cache points elsewhere
    runs = []
    for n_steps, n_examples in ((1, 8), (steps, examples)):
        empty_cache(models)
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[f"adaptation={method}", f"training.max_steps={n_steps}", "training.warmup_steps=0"],
            )
        generator = load_generator(cfg.generator, cfg.adaptation.get("quantization"))
        features = features_for(cfg, generator, n_examples)
        runs.append(train_adapter(generator, cfg.adaptation.method, cfg.training, features).cost)
    cost = runs[-1]
    return {
        "tokens/s": cost.train_tokens_per_s,
        "s/step": cost.train_s / cost.train_steps,
        "peak RSS MB": cost.memory.peak_rss_mb,
        "start RSS MB": cost.memory.rss_at_start_mb,
        "trainable": cost.trainable_params,
    }


def in_own_process(method: str, steps: int, examples: int) -> dict:
    """`train` in a fresh process, so that each method's peak memory is its own, not a high-water mark
    left by the method before it."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(train, method, steps, examples).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["qlora", "full", "dora", "ia3", "prefix", "ptuning", "prompt"])
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    order = ["lora", *[m for m in args.methods if m != "lora"], "lora"]
    rows = [(m, in_own_process(m, args.steps, args.examples)) for m in order]
    baseline = (rows[0][1]["tokens/s"] + rows[-1][1]["tokens/s"]) / 2
    print(
        f"{'method':8s} {'tokens/s':>9s} {'s/step':>7s} {'peak (start) RSS MB':>20s} {'trainable':>12s} {'vs LoRA':>8s}"
    )
    for name, r in rows:
        print(
            f"{name:8s} {r['tokens/s']:9.1f} {r['s/step']:7.1f} {r['peak RSS MB']:12.0f} ({r['start RSS MB']:5.0f})"
            f" {r['trainable']:12,d}"
            f" {r['tokens/s'] / baseline:7.2f}x"
        )


if __name__ == "__main__":
    main()
