"""Supervised fine-tuning on prompt -> response pairs with the HF Trainer and any peft config.

Training memory is mostly the activations kept for the backward pass (benchmarks/profile_training_memory.py
measures where it goes). Two of them are cut here, neither changing a number the training computes:
the loss covers response tokens only and the LM head runs only at those positions (the vocabulary-sized
logits at prompt positions carry no loss, so they are never computed), and dropout on the CPU keeps a
one-byte mask for its backward pass instead of PyTorch's four-byte noise tensor (LoRA applies dropout
to the input of every adapted projection: seven such tensors per layer). Two options trade time for
memory: `training.return_freed_memory` (glibc keeps a step's freed activations in its heap, resident,
so the resident peak is well above what was ever alive at once; mapping large allocations on their own
hands them back when freed, but every allocation then faults in fresh pages) and
`training.gradient_checkpointing` (each layer recomputed in the backward pass).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from ragft import processes
from ragft.adapt.arguments import training_arguments
from ragft.adapt.checkpoints import KeepsProgress, TrainingProgress, epoch_start_callback, last_checkpoint
from ragft.adapt.features import IGNORE
from ragft.adapt.methods import as_method
from ragft.config.plain import as_dict
from ragft.errors import ConfigError
from ragft.models.loading import Generator
from ragft.record.cache import cached_dir, content_key, dir_bytes
from ragft.record.cost import MemoryCost, ParameterCounts, PeakMemory, TrainingCost, parameter_counts
from ragft.record.memory import map_large_allocations

log = logging.getLogger(__name__)
NOT_IN_ADAPTER_KEY = ("logging_steps", "checkpoint_steps")  # training settings that change nothing trained


@dataclass
class TrainingRecord:
    """Where a training's saved weights are, and what it cost."""

    adapter_dir: Path
    cost: TrainingCost


class RightPadCollator:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in batch)

        def pad(values: list[int], fill: int) -> list[int]:
            return values + [fill] * (width - len(values))

        return {
            "input_ids": torch.tensor([pad(f["input_ids"], self.pad_id) for f in batch]),
            "attention_mask": torch.tensor([pad([1] * len(f["input_ids"]), 0) for f in batch]),
            "labels": torch.tensor([pad(f["labels"], IGNORE) for f in batch]),
        }


# Config attributes through which a model post-processes its logits; a model with any of them set gets
# the plain forward loss, since the response-only path computes the LM head's output directly.
LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logits_scaling", "logit_scale", "output_multiplier_scale")


def supports_response_only_loss(model: Any) -> bool:
    """True for a (peft-wrapped) decoder-only LM whose logits are exactly `lm_head(hidden)`, trained with
    an adapter that does not prepend virtual tokens (prompt, prefix and P-tuning do)."""
    config = getattr(model, "peft_config", {})
    if any(c.is_prompt_learning for c in config.values()):
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not (callable(getattr(base, "get_decoder", None)) and base.get_output_embeddings() is not None):
        return False
    return not any(getattr(base.config, attr, None) not in (None, 1, 1.0) for attr in LOGIT_POSTPROCESSING)


def response_only_loss(
    model: Any, inputs: dict[str, torch.Tensor], num_items: int | torch.Tensor | None
) -> torch.Tensor:
    """Causal-LM loss computed from hidden states at the positions that predict a response token.

    Summed and divided by `num_items` (the Trainer's token count over the accumulation window) when
    given, else the mean over this batch's response tokens.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False
    ).last_hidden_state
    targets = inputs["labels"][:, 1:]
    keep = targets != IGNORE
    logits = base.get_output_embeddings()(hidden[:, :-1][keep]).float()
    loss = F.cross_entropy(logits, targets[keep], reduction="sum")
    return loss / (num_items if num_items is not None else keep.sum().clamp(min=1))


class _MaskedDropout(torch.autograd.Function):
    """PyTorch's CPU dropout (the same random draws, scaling and products), keeping a bool mask for the
    backward pass where PyTorch keeps the float noise tensor it multiplied by: a quarter of the bytes."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:
        noise = torch.empty_like(x).bernoulli_(1 - p)
        ctx.save_for_backward(noise.bool())
        ctx.p = p
        return x * noise.div_(1 - p)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return grad * mask.to(grad.dtype).div_(1 - ctx.p), None  # the forward pass's noise, bit for bit


class MaskedDropout(torch.nn.Dropout):
    """`nn.Dropout` whose training pass on the CPU keeps a one-byte mask (`_MaskedDropout`); elsewhere
    (CUDA's fused dropout already keeps one) and in evaluation it is `nn.Dropout` itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.inplace or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        return _MaskedDropout.apply(x, self.p)


def with_masked_dropout(model: torch.nn.Module) -> int:
    """Swap every `nn.Dropout` of `model` (LoRA's among them) for `MaskedDropout`, in place; return how
    many. The swapped modules hold no weights, so nothing saved or loaded changes."""
    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(module, name, MaskedDropout(child.p, child.inplace))
                swapped += 1
    return swapped


def _trainer_class() -> type:
    from transformers import Trainer

    class ResponseOnlyTrainer(KeepsProgress, Trainer):
        """Uses the response-only loss where it is exact, the model's own loss elsewhere."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            if supports_response_only_loss(model):
                loss = response_only_loss(model, inputs, num_items_in_batch)
                # normalised over the whole accumulation window only when the Trainer gave its token count
                self.loss_is_scaled_for_ga = num_items_in_batch is not None
                return (loss, {}) if return_outputs else loss
            self.loss_is_scaled_for_ga = None
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return ResponseOnlyTrainer


def train_adapter(
    generator: Generator,
    method: DictConfig,
    training: DictConfig,
    features: list[dict[str, list[int]]],
    validation: list[dict[str, list[int]]] | None = None,
    start_from: Path | None = None,
    checkpoints: Path | None = None,
    objective: DictConfig | None = None,
) -> TrainingRecord:
    """Train (or reuse from cache) the `method` on `features` with the `training` settings, from the
    generator's weights or from an earlier stage's saved training (`start_from`). With `checkpoints` (a
    folder of the run's), the training saves its state there every `training.checkpoint_steps` and
    resumes from the last complete checkpoint an interrupted attempt left. With a preference `objective`
    (`adaptation.preference.objective`: DPO, ORPO), `features` are preference pairs
    (`ragft.adapt.preference.pair_features`) and the objective's trainer trains a new adapter.

    The generator's model is modified in place (adapters injected, or weights trained): load the
    result with `load_adapted` onto a freshly loaded base. In a multi-process run every process trains
    (data-parallel) and the main one keeps the result.
    """
    key = content_key(
        "adapter",
        generator.path,
        str(generator.model.dtype),
        str(getattr(generator.model.config, "quantization_config", None)),
        as_dict(method),
        {k: v for k, v in as_dict(training).items() if k not in NOT_IN_ADAPTER_KEY},
        features,
        validation or [],
        start_from.name if start_from else None,
        *([f"processes={processes.world_size()}"] if processes.distributed() else []),  # the global batch
        *([as_dict(objective)] if objective is not None else []),
    )
    resume_in = checkpoints / key if checkpoints is not None else None

    def build(out: Path) -> None:
        _train(generator, method, training, features, validation, start_from, out, resume_in, objective)

    saved_dir, trained_now = cached_dir("adapters", key, build, every_process=True)
    stats_file = saved_dir / "train_stats.json"
    cost = TrainingCost.from_dict(json.loads(stats_file.read_text()))
    cost.adapter_bytes = dir_bytes(saved_dir) - stats_file.stat().st_size
    cost.adapter_reused = not trained_now
    return TrainingRecord(adapter_dir=saved_dir, cost=cost)


def _train(
    generator: Generator,
    method: DictConfig,
    training: DictConfig,
    features: list[dict[str, list[int]]],
    validation: list[dict[str, list[int]]] | None,
    start_from: Path | None,
    out: Path,
    checkpoints: Path | None = None,
    objective: DictConfig | None = None,
) -> None:
    """One training run with the HF Trainer (or a preference `objective`'s TRL trainer); the trained
    weights and their cost are saved in `out`. With `checkpoints`, it resumes from the last complete
    checkpoint there and saves new ones there."""
    from hydra.utils import instantiate

    torch.manual_seed(training.seed)
    patience = training.validation.get("early_stopping_patience") if validation else None
    adaptation = as_method(instantiate(method, _convert_="all"))
    if training.get("return_freed_memory", False):
        map_large_allocations()
    with tempfile.TemporaryDirectory() as scratch, PeakMemory("training") as memory:
        output_dir = str(checkpoints or scratch)
        arguments = partial(
            training_arguments, training, output_dir, generator.device, bool(validation), checkpoints is not None
        )
        if objective is None:
            trainer = _supervised_trainer(generator, adaptation, start_from, features, validation, patience, arguments)
        else:
            trainer = instantiate(objective).trainer(generator, adaptation, start_from, features, arguments)
        with_masked_dropout(trainer.model)
        counts = parameter_counts(trainer.model)
        resume = last_checkpoint(checkpoints)
        trainer.progress = TrainingProgress.load(resume)
        trainer.add_callback(epoch_start_callback(trainer.progress))
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        train_s, train_loss = trainer.progress.total(result.training_loss, result.global_step)
    if result.global_step == 0:  # never recorded (or cached) as a trained adapter
        raise ConfigError(
            "training",
            f"the adapter trained 0 steps on {len(features)} examples.",
            "Set training.max_steps or training.epochs so that at least one optimizer step runs.",
        )
    adaptation.save(trainer.model, out)
    cost = _training_cost(trainer, result, train_s, len(features), memory.record(), adaptation.stored, counts)
    cost.train_loss, cost.resumed_from_step = train_loss, trainer.progress.step or None
    if validation:
        _add_validation(cost, trainer, result, len(validation), stopped_early_possible=bool(patience))
    (out / "train_stats.json").write_text(json.dumps(asdict(cost), indent=2))


def _supervised_trainer(
    generator: Generator,
    adaptation: Any,
    start_from: Path | None,
    features: list[dict[str, list[int]]],
    validation: list[dict[str, list[int]]] | None,
    patience: int | None,
    arguments: Callable[..., Any],
) -> Any:
    """The supervised fine-tuning Trainer, its model prepared by the adaptation method."""
    model = adaptation.prepare(generator.model, start_from)
    return _trainer_class()(
        model=model,
        args=arguments(),
        train_dataset=_dataset(features),
        eval_dataset=_dataset(validation) if validation else None,
        data_collator=RightPadCollator(generator.tokenizer.pad_token_id),
        callbacks=[_early_stopping(patience)] if patience else [],
    )


def _training_cost(
    trainer: Any, result: Any, train_s: float, examples: int, memory: MemoryCost, stored: str, counts: ParameterCounts
) -> TrainingCost:
    tokens = int(trainer.state.num_input_tokens_seen)  # non-padding tokens actually trained on
    return TrainingCost(
        **counts,
        stored=stored,
        train_s=train_s,
        train_tokens=tokens,
        train_tokens_per_s=tokens / train_s,
        train_examples=examples,
        train_steps=result.global_step,
        train_loss=result.training_loss,
        loss_history=[h["loss"] for h in trainer.state.log_history if "loss" in h],
        memory=memory,  # peak, and resident memory at its start
        reward_accuracy=_last_logged(trainer, "rewards/accuracies"),
        reward_margin=_last_logged(trainer, "rewards/margins"),
    )


def _last_logged(trainer: Any, name: str) -> float | None:
    """The last value the Trainer logged for `name` during training (preference trainers' metrics)."""
    return next((float(h[name]) for h in reversed(trainer.state.log_history) if name in h), None)


def _add_validation(cost: TrainingCost, trainer: Any, result: Any, examples: int, stopped_early_possible: bool) -> None:
    eval_losses = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    cost.validation_examples = examples
    cost.eval_loss_history = eval_losses
    cost.best_eval_loss = min(eval_losses) if eval_losses else None
    cost.stopped_early = stopped_early_possible and result.global_step < trainer.state.max_steps


def _early_stopping(patience: int) -> Any:
    from transformers import EarlyStoppingCallback

    return EarlyStoppingCallback(early_stopping_patience=int(patience))


def _dataset(features: list[dict[str, list[int]]]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{**f, "length": len(f["input_ids"])} for f in features])


def load_adapted(generator: Generator, method: DictConfig, saved_dir: Path, merge: bool) -> Generator:
    """The generator (holding a freshly loaded base) with the saved training applied; merged into the
    weights when `merge` (LoRA, DoRA, IA3), so generation runs at the base model's speed."""
    from hydra.utils import instantiate

    adaptation = as_method(instantiate(method, _convert_="all"))
    generator.model = adaptation.load(generator.model, saved_dir, merge).eval()
    return generator
