"""Where LoRA training memory goes, and what each cut and option changes.

    python benchmarks/profile_training_memory.py             # real size: writes results/training_memory.json
    python benchmarks/profile_training_memory.py --tiny      # tiny random model: a smoke run

Real size is the default experiment's LoRA run: the default generator (SmolLM2-135M), the `lora` arm's
settings, training batch 8 of its prompts (~200 tokens, from corpora/clinic/notes.jsonl), all built by
ragft's own training path (`recipe.prepare` -> `Adaptation.stage_features` -> `sft.train_adapter`).

Every run is a process of its own (the allocator setting cannot be undone within a process):

- training runs, `--repeats` per timed variant in alternating order: `train_adapter` for `--steps`
  steps from a fresh base in an empty artefact cache; its recorded peak resident memory above its start
  (the kernel's high-water mark, reset as training starts) and the seconds and tokens of the steps after
  the first (the first is also the longest batch: the Trainer's length-grouped sampler serves it first,
  so the peak falls in it);
- breakdown passes, once per variant: one forward and backward pass of that first batch; every tensor
  autograd keeps for the backward pass, by the module that saved it (parameters left out: they are the
  weights, not copies), and the resident memory at the start, after the forward pass and at the pass's
  peak. Resident memory beyond what is alive is memory the C allocator kept after it was freed.

Variants, each with one cut more than the one above it, then the two options and both:
- full_logits: the model's own loss (LM head at every position) and PyTorch's dropout (breakdown only);
- response_only: the LM head at response positions only (ragft before the dropout cut);
- ragft: and one-byte dropout masks (the default);
- ragft_return_freed: ragft with `training.return_freed_memory=true` (large allocations mapped on their
  own, returned to the system when freed); response_only_return_freed: the same without the dropout cut
  (breakdown only);
- ragft_checkpointing: ragft with `training.gradient_checkpointing=true`;
- ragft_checkpointing_return_freed: ragft with both options.

A breakdown's resident figures depend on what the process allocated and freed before (glibc's heap);
its saved bytes do not.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import (  # noqa: E402
    alternating_orders,
    check_repeats,
    compose,
    default_threads,
    empty_artefact_cache,
    result_path,
    set_threads,
    spread,
    step_timer,
    timed_steps,
    write_result,
)

BENCH = "training_memory"
TINY = ["+debug=smoke", "training.batch_size=8", "task.limits.train=24"]
SWITCHES = ("model_own_loss", "torch_dropout", "gradient_checkpointing", "return_freed_memory")
VARIANTS = {  # name: the switches' values
    "full_logits": (True, True, False, False),
    "response_only": (False, True, False, False),
    "ragft": (False, False, False, False),
    "response_only_return_freed": (False, True, False, True),
    "ragft_return_freed": (False, False, False, True),
    "ragft_checkpointing": (False, False, True, False),
    "ragft_checkpointing_return_freed": (False, False, True, True),
}
TIMED = ["response_only", "ragft", "ragft_return_freed", "ragft_checkpointing", "ragft_checkpointing_return_freed"]
# breakdown passes made after a first-repeat run with the same allocator setting, or in a process of their own
BREAKDOWNS = {
    "response_only": ["response_only"],
    "ragft": ["ragft"],
    "ragft_return_freed": ["ragft_return_freed", "response_only_return_freed"],
}
BREAKDOWNS_ALONE = ["full_logits"]
CATEGORIES = [  # saving module (layer numbers left out) -> what it saved, first match wins
    (r"lora_dropout", "LoRA dropout masks"),
    (r"lora_A", "LoRA A inputs (the dropped-out copies of each adapted projection's input)"),
    (r"lora_B", "LoRA B inputs (rank-16 activations)"),
    (r"mlp", "MLP (gate and up outputs, SiLU)"),
    (r"self_attn", "attention (q, k, v after RoPE, attention output)"),
    (r"norm", "RMS norms"),
    (r"lm_head|^$|^base_model(\.model)?$", "LM head and loss (logits, log-softmax)"),
    (r"embed", "embeddings"),
]
MB = 2**20


def variant_patches(own_loss: bool, torch_dropout: bool) -> ExitStack:
    """The training path with a cut undone: the model's own loss, or PyTorch's dropout."""
    from ragft.adapt import sft

    stack = ExitStack()
    if own_loss:
        stack.enter_context(mock.patch.object(sft, "supports_response_only_loss", lambda model: False))
    if torch_dropout:
        stack.enter_context(mock.patch.object(sft, "with_masked_dropout", lambda model: 0))
    return stack


def training_features(cfg: Any) -> tuple[Any, list[dict[str, list[int]]]]:
    """The arm's checked setup and its training features, as a run builds them."""
    from ragft.recipe import prepare

    arm = prepare(cfg)
    generator = arm.load_base()
    features, _, _ = arm.adaptation.stage_features(arm.adaptation.stages[-1], generator.tokenizer)
    generator.release()
    return arm, features


def train_run(arm: Any, cfg: Any, features: list[dict], variant: str, steps: int) -> dict[str, Any]:
    """One `train_adapter` run of the variant from a fresh base: peak memory above its start, timings."""
    from ragft.adapt.sft import train_adapter

    own_loss, torch_dropout, checkpointing, return_freed = VARIANTS[variant]
    training = copy.deepcopy(cfg.training)
    training.max_steps, training.logging_steps = steps, 1  # every step's loss, to compare variants
    training.gradient_checkpointing, training.return_freed_memory = checkpointing, return_freed
    generator = arm.load_base()
    with empty_artefact_cache(), step_timer() as timings, variant_patches(own_loss, torch_dropout):
        cost = train_adapter(generator, cfg.adaptation.method, training, features).cost
    generator.release()
    if cost.adapter_reused:
        raise RuntimeError("train_adapter reused a cached adapter: nothing was measured.")
    memory = cost.memory
    return {
        "peak_rss_mb": memory.peak_rss_mb,
        "rss_at_start_mb": memory.rss_at_start_mb,
        "growth_mb": memory.peak_rss_mb - memory.rss_at_start_mb,
        "peak_source": memory.peak_source,
        "train_loss": cost.train_loss,
        "loss_history": cost.loss_history,
        **timed_steps(timings),
    }


@contextmanager
def saved_tensor_accounting(model: Any) -> Iterator[Counter]:
    """Bytes of every tensor autograd saves for the backward pass inside the block, by the module that
    saved it (each storage counted once; the model's parameters are not counted)."""
    import torch

    stack, saved, seen = [""], Counter(), {p.untyped_storage().data_ptr() for p in model.parameters()}
    handles = []

    def leave(module: Any, inputs: Any, output: Any) -> None:  # returns None: the output is kept
        stack.pop()

    for name, module in model.named_modules():
        short = re.sub(r"\.\d+\.", ".N.", name.replace("base_model.model.", ""))
        handles.append(module.register_forward_pre_hook(lambda m, a, n=short: stack.append(n)))
        handles.append(module.register_forward_hook(leave))

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            saved[stack[-1]] += storage.nbytes()
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            yield saved
    finally:
        for handle in handles:
            handle.remove()


def by_category(saved: Counter) -> dict[str, float]:
    totals: Counter = Counter()
    for module, nbytes in saved.items():
        totals[next((name for pattern, name in CATEGORIES if re.search(pattern, module)), "other")] += nbytes / MB
    return {name: round(mb, 1) for name, mb in totals.most_common()}


def breakdown(arm: Any, cfg: Any, features: list[dict], variant: str) -> dict[str, Any]:
    """One forward and backward pass of the Trainer's first batch: what is saved for the backward pass,
    what is resident, and the parameter-derived sizes of weights, gradients and Adam's state."""
    import tempfile

    from hydra.utils import instantiate

    from ragft.adapt import sft
    from ragft.adapt.methods import as_method
    from ragft.record.memory import PeakMemory, map_large_allocations, resident_bytes

    own_loss, torch_dropout, _, return_freed = VARIANTS[variant]
    if return_freed:
        map_large_allocations()
    before_load = resident_bytes()
    generator = arm.load_base()
    weights_mb = (resident_bytes() - before_load) / MB
    model = as_method(instantiate(cfg.adaptation.method, _convert_="all")).prepare(generator.model, None)
    if not torch_dropout:
        sft.with_masked_dropout(model)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = sft._trainer_class()(
            model=model,
            args=sft.training_arguments(cfg.training, scratch, generator.device),
            train_dataset=sft._dataset(features),
            data_collator=sft.RightPadCollator(generator.tokenizer.pad_token_id),
        )
        batch = next(iter(trainer.get_train_dataloader()))
    model.train()
    with PeakMemory("breakdown") as memory, saved_tensor_accounting(model) as saved:
        loss = model(**batch).loss if own_loss else sft.response_only_loss(model, batch, None)
        after_forward = resident_bytes()
    loss.backward()
    record = memory.record()
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad) / MB
    result = {
        "batch_shape": list(batch["input_ids"].shape),
        "response_tokens": int((batch["labels"] != sft.IGNORE).sum()),
        "base_weights_resident_mb": round(weights_mb, 1),
        "base_weights_bytes_mb": round(sum(p.numel() * p.element_size() for p in model.parameters()) / MB, 1),
        "lora_weights_mb": round(trainable, 1),
        "lora_gradients_mb": round(trainable, 1),
        "adam_state_mb": round(2 * trainable, 1),
        "rss_at_start_mb": round(record.rss_at_start_mb, 1),
        "rss_after_forward_mb": round(after_forward / MB, 1),
        "peak_rss_mb": round(record.peak_rss_mb, 1),
        "growth_to_peak_mb": round(record.peak_rss_mb - record.rss_at_start_mb, 1),
        "saved_for_backward_mb": round(sum(saved.values()) / MB, 1),
        "saved_by_category_mb": by_category(saved),
        "saved_by_module_mb": {k: round(v / MB, 1) for k, v in saved.most_common(25)},
    }
    del loss, model, trainer
    generator.release()
    return result


def child(args: argparse.Namespace, variant: str | None, breakdowns: list[str]) -> dict[str, Any]:
    """One run of `variant` (None: none) and the named breakdown passes after it, in a process of its own."""
    command = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--breakdowns", *breakdowns]
    command += ["--run", variant] if variant else []
    command += [*(["--tiny"] if args.tiny else []), *(["--threads", str(args.threads)] if args.threads else [])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def run_in_this_process(args: argparse.Namespace) -> None:
    """The child: the run, then its breakdown passes, printed as one JSON line."""
    cfg = compose(overrides_of(args))
    arm, features = training_features(cfg)
    lengths = [len(f["input_ids"]) for f in features]
    result = {"features": {"examples": len(features), "tokens_per_example": spread(lengths)}}
    result["run"] = train_run(arm, cfg, features, args.run, args.steps) if args.run else None
    result["breakdowns"] = {name: breakdown(arm, cfg, features, name) for name in args.breakdowns}
    print(json.dumps(result))


def overrides_of(args: argparse.Namespace) -> list[str]:
    return [*(TINY if args.tiny else ["task.limits.train=120"]), "arm=lora", "exp_name=profile"]


def timed_count(run: dict[str, Any]) -> int:
    return len([step for step in run["steps"] if not step["warmup"]])


def summary_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: the spread of peak growth, seconds per timed step and tokens/s; each variant's median
    growth and step time against `ragft`'s."""
    per: dict[str, Any] = {}
    for variant in TIMED:
        runs = [r["variants"][variant] for r in records]
        per[variant] = {
            "growth_mb": spread([r["growth_mb"] for r in runs]),
            "peak_rss_mb": spread([r["peak_rss_mb"] for r in runs]),
            "rss_at_start_mb": spread([r["rss_at_start_mb"] for r in runs]),
            "seconds_per_timed_step": spread([r["seconds"] / timed_count(r) for r in runs]),
            "tokens_per_s": spread([r["tokens"] / r["seconds"] for r in runs]),
            "loss_vs_ragft_max_abs_diff": max(
                abs(a - b)
                for r in records
                for a, b in zip(r["variants"][variant]["loss_history"], r["variants"]["ragft"]["loss_history"])
            ),  # every step's loss is logged: histories of `steps` values
        }
    base = per["ragft"]
    for figures in per.values():
        figures["growth_vs_ragft"] = figures["growth_mb"]["median"] / base["growth_mb"]["median"]
        figures["step_time_vs_ragft"] = (
            figures["seconds_per_timed_step"]["median"] / base["seconds_per_timed_step"]["median"]
        )
    return per


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2, help="training steps per run; the first is not timed")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant, alternated (at least 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    parser.add_argument("--tiny", action="store_true", help="tiny random model (+debug=smoke): a smoke run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one process's work
    parser.add_argument("--run", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--breakdowns", nargs="*", choices=list(VARIANTS), default=[], help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/training_memory.json)")
    args = parser.parse_args()
    if not args.child:
        check_repeats(args.repeats)
    return args


def main() -> None:
    args = parse_args()
    threads = set_threads(args.threads or default_threads())
    if args.child:
        run_in_this_process(args)
        return
    load_at_start = os.getloadavg()
    records, features = [], {}
    first = child(args, None, BREAKDOWNS_ALONE)
    passes = first["breakdowns"]
    for repeat, order in enumerate(alternating_orders(TIMED, args.repeats)):
        runs = {}
        for variant in order:
            result = child(args, variant, BREAKDOWNS.get(variant, []) if repeat == 0 else [])
            runs[variant] = result["run"]
            passes.update(result["breakdowns"])
            features = result["features"]
            print(
                f"repeat {repeat + 1} {variant}: +{runs[variant]['growth_mb']:.0f} MB, {runs[variant]['seconds']:.1f} s"
            )
        records.append({"repeat": repeat, "order": order, "variants": runs})
    cfg = compose(overrides_of(args))
    try:
        summary = {"variants": summary_of(records), "breakdown": {v: passes[v] for v in VARIANTS if v in passes}}
    except (KeyError, ValueError, ZeroDivisionError) as err:  # the raw runs are still worth keeping
        summary = {"error": repr(err), "breakdown": passes}
    settings = {
        "generator": cfg.generator.name,
        "arm": "lora",
        "overrides": overrides_of(args),
        "variants": {name: dict(zip(SWITCHES, switches)) for name, switches in VARIANTS.items()},
        "training_batch_size": cfg.training.batch_size,
        "steps_per_run": args.steps,
        "timed": "the steps after the first of each run (seconds and non-padding tokens)",
        "memory": "peak resident memory (kernel high-water mark, reset as training starts) minus resident at start",
        "process": "every run in a process of its own, variants in alternating order",
        **features,
        "repeats": args.repeats,
        "threads": threads,
        "load_average_1_5_15_min": {"start": load_at_start, "end": os.getloadavg()},  # other work on the machine
        "tiny": args.tiny,
    }
    write_result(result_path(BENCH, args.out, args.tiny), BENCH, settings, records, summary)


if __name__ == "__main__":
    main()
