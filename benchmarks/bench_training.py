"""LoRA training throughput: ragft's response-only loss vs the plain HF causal-LM loss, same run.

    python benchmarks/bench_training.py --examples 32 --steps 4

Both arms train the same LoRA config on the same medical_reports prompts (batch 8, grouped by
length) with the HF Trainer; the plain arm computes logits at every position (labels masked to -100
on the prompt), ragft's runs the LM head only where a response token is predicted. Prints tokens/s
for each and the ratio, plus peak RSS growth. Run on an otherwise idle machine; arms alternate.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ragft.adapt import sft
from ragft.context.shots import ZeroShot
from ragft.context.template import PromptTemplate
from ragft.data.loading import load_task
from ragft.models.loading import load_generator

CONF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")


def plain_loss(model, inputs, num_items):  # noqa: ANN001
    return model(**inputs).loss


def train_once(generator, method, training, features, loss_fn) -> dict:  # noqa: ANN001
    from peft import get_peft_model
    from transformers import Trainer

    class Bench(Trainer):
        loss_is_scaled_for_ga = True

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            return loss_fn(model, inputs, None)

    torch.manual_seed(0)
    model = get_peft_model(generator.model, instantiate(method, _convert_="all"))
    process = psutil.Process()
    before = process.memory_info().rss
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Bench(
            model=model,
            args=sft.training_arguments(training, scratch, generator.device),
            train_dataset=sft._dataset(features),
            data_collator=sft.RightPadCollator(generator.tokenizer.pad_token_id),
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    generator.model = model.unload()
    tokens = trainer.state.num_input_tokens_seen
    return {
        "tokens_per_s": tokens / seconds,
        "seconds": seconds,
        "rss_growth_mb": (process.memory_info().rss - before) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--overrides", nargs="*", default=[])
    args = parser.parse_args()
    OmegaConf.register_new_resolver("ragft_root", lambda: os.path.dirname(CONF), replace=True)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=["arm=lora", f"training.max_steps={args.steps}", *args.overrides])
    task = load_task(cfg.task.name, cfg.task.data, None, {"train": args.examples})
    generator = load_generator(cfg.generator)
    train = task.split("train")
    prompts = PromptTemplate.from_config(cfg.task.template).render_all(
        train, ZeroShot().build(train, None), generator.tokenizer
    )
    features = sft.build_features(
        generator.tokenizer, prompts, [e.reference for e in train], [e.id for e in train], cfg.training.max_length
    )
    results = {"plain HF loss": [], "ragft response-only loss": []}
    for _ in range(args.repeats):
        results["plain HF loss"].append(
            train_once(generator, cfg.adaptation.method, cfg.training, features, plain_loss)
        )
        results["ragft response-only loss"].append(
            train_once(generator, cfg.adaptation.method, cfg.training, features, sft.response_only_loss)
        )
    best = {name: max(r["tokens_per_s"] for r in runs) for name, runs in results.items()}
    for name, runs in results.items():
        print(f"{name:26s} tokens/s {best[name]:7.1f}   runs: " + ", ".join(f"{r['tokens_per_s']:.1f}" for r in runs))
    print(f"speed-up (response-only / plain): {best['ragft response-only loss'] / best['plain HF loss']:.2f}x")


if __name__ == "__main__":
    main()
