"""LoRA training throughput: ragft's training path against a plain HF Trainer + peft script, same run.

    python benchmarks/bench_training.py            # SmolLM2-135M, 3 repeats (about 6 min on 2 cores)
    python benchmarks/bench_training.py --tiny     # tiny random model: seconds

Both arms train the same LoRA config on the same medical_reports features with the same
TrainingArguments (batch, learning rate, steps, length-grouped sampling, seed, dtype), the same
collator and the same torch threads. The plain arm is what a script would do: `peft.get_peft_model` and
`transformers.Trainer` with the model's own loss (logits at every position, prompt labels masked). The
ragft arm is `ragft.adapt.sft.train_adapter` in an empty artefact cache (the LM head runs only where a
response token is predicted). Each run's first optimizer step is a warm-up and is not timed, and each
arm also does one untimed one-step run before the repeats; the arms then alternate (A B, B A, A B).
Tokens are the non-padding prompt + response tokens of the timed steps, counted by the Trainer in both
arms. Writes benchmarks/results/bench_training.json (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import tempfile
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
    step_timer,
    summarise,
    timed_steps,
    write_result,
)

BENCH = "bench_training"
TINY = ["+debug=smoke"]  # tiny random generator and embedder (conf/debug/smoke.yaml)


def training_features(cfg: Any, tokenizer: Any, examples: int) -> list[dict[str, list[int]]]:
    """The first `examples` training notes of the task, zero-shot prompts, tokenised as ragft trains them."""
    from ragft.adapt.features import build_features
    from ragft.context.shots import ZeroShot
    from ragft.context.template import PromptTemplate
    from ragft.data.loading import load_task

    train = load_task(cfg.task.name, cfg.task.data, None, {"train": examples}).split("train")
    prompts = PromptTemplate.from_config(cfg.task.template).render_all(train, ZeroShot().build(train, None), tokenizer)
    return build_features(
        tokenizer, prompts, [e.reference for e in train], [e.id for e in train], cfg.training.max_length
    )


def plain_steps(cfg: Any, features: list[dict[str, list[int]]]) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """The plain script: peft model, HF Trainer with the model's own loss, ragft's TrainingArguments and
    collator so that every setting but the training code is the same. Returns the per-step timings."""
    import torch
    from datasets import Dataset
    from hydra.utils import instantiate
    from peft import get_peft_model
    from transformers import Trainer

    from ragft.adapt.sft import RightPadCollator, training_arguments
    from ragft.models.loading import load_generator

    generator = load_generator(cfg.generator)
    torch.manual_seed(cfg.training.seed)
    model = get_peft_model(generator.model, instantiate(cfg.adaptation.method, _convert_="all"))
    dataset = Dataset.from_list([{**f, "length": len(f["input_ids"])} for f in features])
    with tempfile.TemporaryDirectory() as scratch, step_timer() as steps:
        trainer = Trainer(
            model=model,
            args=training_arguments(cfg.training, scratch, generator.device),
            train_dataset=dataset,
            data_collator=RightPadCollator(generator.tokenizer.pad_token_id),
        )
        result = trainer.train()
    extra = {"train_loss": result.training_loss}
    del generator, model, trainer
    gc.collect()
    return steps, extra


def ragft_steps(cfg: Any, features: list[dict[str, list[int]]]) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """ragft's `train_adapter` in an empty artefact cache, so that it trains rather than reuses."""
    from ragft.adapt.sft import train_adapter
    from ragft.models.loading import load_generator

    generator = load_generator(cfg.generator)
    with empty_artefact_cache(), step_timer() as steps:
        cost = train_adapter(generator, cfg.adaptation.method, cfg.training, features).cost
    if cost.adapter_reused:
        raise RuntimeError("train_adapter reused a cached adapter: the ragft arm timed no training.")
    extra = {"train_loss": cost.train_loss, "ragft_train_s": cost.train_s, "ragft_train_tokens": cost.train_tokens}
    del generator
    gc.collect()
    return steps, extra


def measured(run: Any, cfg: Any, features: list[dict[str, list[int]]]) -> dict[str, Any]:
    steps, extra = run(cfg, features)
    return {**timed_steps(steps), **extra}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default 3; --tiny 2)")
    parser.add_argument("--examples", type=int, default=None, help="training notes (default (steps+1) x batch)")
    parser.add_argument("--batch-size", type=int, default=None, help="training batch (default: config, 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per arm, at least 3")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (+debug=smoke): a smoke run")
    parser.add_argument("--overrides", nargs="*", default=[], help="further Hydra overrides")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_training.json)")
    args = parser.parse_args()
    check_repeats(args.repeats)
    args.steps = args.steps or (2 if args.tiny else 3)
    return args


def main() -> None:
    args = parse_args()
    threads = set_threads(args.threads or default_threads())
    overrides = [*(TINY if args.tiny else []), "arm=lora", f"training.max_steps={args.steps + 1}"]
    if args.batch_size:
        overrides.append(f"training.batch_size={args.batch_size}")
    cfg = compose([*overrides, *args.overrides])
    one_step = copy.deepcopy(cfg)
    one_step.training.max_steps = 1
    examples = args.examples or (args.steps + 1) * cfg.training.batch_size

    from omegaconf import OmegaConf

    from ragft.models.loading import load_generator

    probe = load_generator(cfg.generator)
    features = training_features(cfg, probe.tokenizer, examples)
    dtype = str(probe.model.dtype)
    del probe
    records = run_repeats(
        {"plain": lambda: measured(plain_steps, cfg, features), "ragft": lambda: measured(ragft_steps, cfg, features)},
        args.repeats,
        warmups={"plain": lambda: plain_steps(one_step, features), "ragft": lambda: ragft_steps(one_step, features)},
    )
    summary = summarise(records, {"ragft/plain": ("ragft", "plain")})
    summary["same_tokens_every_repeat"] = all(
        r["arms"]["plain"]["tokens"] == r["arms"]["ragft"]["tokens"] for r in records
    )
    settings = {
        "arms": {
            "plain": "peft.get_peft_model + transformers.Trainer, the model's own loss",
            "ragft": "ragft.adapt.sft.train_adapter (response-only loss), empty artefact cache",
        },
        "tokens": "non-padding prompt + response tokens of the timed steps (Trainer's num_input_tokens_seen)",
        "timed_steps_per_run": args.steps,
        "warmup": "1 untimed step at the start of every run, and 1 untimed one-step run per arm first",
        "examples": len(features),
        "mean_tokens_per_example": sum(len(f["input_ids"]) for f in features) / len(features),
        "repeats": args.repeats,
        "threads": threads,
        "dtype": dtype,
        "generator": cfg.generator.name,
        "tiny": args.tiny,
        "overrides": [*overrides, *args.overrides],
        "method": OmegaConf.to_container(cfg.adaptation.method, resolve=True),
        "training": OmegaConf.to_container(cfg.training, resolve=True),
    }
    print_summary(summary)
    write_result(result_path(BENCH, args.out, args.tiny), BENCH, settings, records, summary)


if __name__ == "__main__":
    main()
