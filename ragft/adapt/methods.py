"""Adaptation methods: what a method makes trainable, what it saves, and how it is loaded for serving.

`adaptation.method` in each conf/adaptation/*.yaml is either any peft config (LoRA, DoRA, IA3, prefix
tuning, prompt tuning, P-tuning v2 deep prompts, ...), which `as_method` wraps in `PeftAdapter`, or an
object with the same `stored` attribute and `prepare` / `save` / `load` operations, such as
`FullFineTuning`. A new method is one config file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import torch
from omegaconf import DictConfig, OmegaConf

from ragft.errors import ConfigError, build

log = logging.getLogger(__name__)


class AdaptationMethod(Protocol):
    #: what a deployment stores per task: "adapter" (beside one shared base) or "full model"
    stored: str

    def prepare(self, model: Any, start_from: Path | None) -> Any:
        """The model to train: the base wrapped or unfrozen, or the previous stage's weights."""

    def save(self, model: Any, out: Path) -> None:
        """Write what a deployment must store for this task."""

    def load(self, base: Any, saved: Path, merge: bool) -> Any:
        """The base model with the saved training applied (merged into the weights where `merge`)."""


def is_quantized(model: Any) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


class PeftAdapter:
    """Any peft config: only the adapter's parameters train and are saved."""

    stored = "adapter"

    def __init__(self, config: Any) -> None:
        self.config = config

    def prepare(self, model: Any, start_from: Path | None) -> Any:
        from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

        if is_quantized(model):  # QLoRA: norms in fp32, inputs carry gradients to the adapters
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        if start_from is not None:
            return PeftModel.from_pretrained(model, str(start_from), is_trainable=True)
        return get_peft_model(model, self.config)

    def save(self, model: Any, out: Path) -> None:
        model.save_pretrained(out)

    def load(self, base: Any, saved: Path, merge: bool) -> Any:
        from peft import PeftModel

        model = PeftModel.from_pretrained(base, str(saved))
        if not merge:
            return model
        problem = merge_problem(self.config, is_quantized(base))
        if problem:
            raise problem
        return model.merge_and_unload()


def _full_on_4bit() -> ConfigError:
    return ConfigError(
        "adaptation",
        "full fine-tuning cannot train a quantised base model.",
        "Remove adaptation.quantization, or use qlora to train adapters on a 4-bit base.",
    )


def merge_problem(config: Any, quantized: bool) -> ConfigError | None:
    """Why an adapter cannot be merged into its base for serving, if it cannot."""
    if config is not None and config.is_prompt_learning:
        return ConfigError(
            "adaptation.merge_for_inference",
            f"{config.peft_type.value} adds virtual tokens; there are no weights to merge them into.",
            "Set adaptation.merge_for_inference=false.",
        )
    if quantized:
        return ConfigError(
            "adaptation.merge_for_inference",
            "merging into a 4-bit base would round the adapter's update away.",
            "Set adaptation.merge_for_inference=false for QLoRA.",
        )
    return None


class FullFineTuning:
    """Every weight trains (in fp32, so that small updates are not rounded away in bf16: the Trainer's
    autocast computes in bf16 where the device has it); a deployment stores a full copy of the model per
    task, in the dtype the base was served in."""

    stored = "full model"

    def __init__(self) -> None:
        self.serving_dtype: torch.dtype | None = None

    def prepare(self, model: Any, start_from: Path | None) -> Any:
        if is_quantized(model):
            raise _full_on_4bit()
        if start_from is not None:
            model = self.load(model, start_from, merge=False)
        self.serving_dtype = model.dtype
        model = model.float()
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model

    def save(self, model: Any, out: Path) -> None:
        model.to(self.serving_dtype or model.dtype).save_pretrained(out)

    def load(self, base: Any, saved: Path, merge: bool) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(str(saved), dtype=base.dtype, local_files_only=True).to(base.device)


def as_method(spec: Any) -> AdaptationMethod:
    """The instantiated `adaptation.method`: a peft config becomes a `PeftAdapter`."""
    from peft import PeftConfig

    if isinstance(spec, PeftConfig):
        return PeftAdapter(spec)
    if isinstance(getattr(spec, "stored", None), str) and all(
        callable(getattr(spec, op, None)) for op in ("prepare", "save", "load")
    ):
        return spec
    raise ConfigError(
        "adaptation.method",
        f"{type(spec).__name__} is neither a peft config nor an adaptation method.",
        "Use a peft config (_target_: peft.LoraConfig, ...) or ragft.adapt.methods.FullFineTuning.",
    )


def peft_config(method: AdaptationMethod) -> Any:
    """The peft config the preference stage trains a new adapter of."""
    if not isinstance(method, PeftAdapter) or method.config.is_prompt_learning:
        raise ConfigError(
            "adaptation.method",
            f"preference tuning trains a peft adapter with weights (LoRA, DoRA, IA3), not {type(method).__name__}.",
            "Use adaptation=dpo or adaptation=orpo, or set adaptation.method to a LoRA-family peft config.",
        )
    return method.config


def preference_training(training: DictConfig, overrides: Any) -> DictConfig:
    """The preference stage's training settings: `training`, resolved, with `adaptation.preference.training`
    over it (e.g. a lower learning rate and one epoch for DPO)."""
    resolved = OmegaConf.create(OmegaConf.to_container(training, resolve=True))
    unknown = sorted(set(overrides or {}) - set(resolved))
    if unknown:
        raise ConfigError(
            "adaptation.preference.training", f"names settings that are not training settings: {unknown}.",
            f"Use names of training (e.g. {', '.join(sorted(resolved)[:4])}, ...).",
        )  # fmt: skip
    merged = OmegaConf.merge(resolved, overrides or {})
    assert isinstance(merged, DictConfig)
    return merged


def _check_preference(adaptation: Any, training: Any, method: AdaptationMethod, n_stages: int) -> None:
    """Fail before any work on a preference stage that cannot train as configured."""
    peft_config(method)  # a peft adapter with weights
    refused = {
        "adaptation.quantization": adaptation.get("quantization") is not None,
        "sequence / train_mix": n_stages > 1,
        "training.validation": bool(training.validation.get("split") or training.validation.get("holdout")),
    }
    for key, is_set in refused.items():
        if is_set:
            raise ConfigError(
                key,
                "is set, but preference tuning (adaptation.preference) trains on the run's own task, a full-precision "
                "base and no validation data.",
                f"Remove {key}, or use a supervised method (adaptation=lora).",
            )


def check_adaptation(adaptation: Any, training: Any, n_stages: int) -> None:
    """Fail before any work on adaptation and training settings that cannot work together."""
    validation = training.validation
    if (validation.get("early_stopping_patience") or validation.get("eval_steps")) and not (
        validation.get("split") or validation.get("holdout")
    ):
        raise ConfigError(
            "training.validation",
            "early_stopping_patience / eval_steps need validation data, and none is set.",
            "Set training.validation.split (e.g. validation) or training.validation.holdout (e.g. 0.1).",
        )
    if validation.get("split") and validation.get("holdout"):
        raise ConfigError("training.validation", "set either split or holdout, not both.", "Null one of them.")
    method = as_method(build(adaptation.method, "adaptation.method", _convert_="all"))
    if isinstance(method, FullFineTuning) and adaptation.get("quantization") is not None:
        raise _full_on_4bit()
    if adaptation.get("preference") is not None:
        _check_preference(adaptation, training, method, n_stages)
    config = getattr(method, "config", None)
    if adaptation.get("merge_for_inference"):
        problem = merge_problem(config, adaptation.get("quantization") is not None)
        if problem:
            raise problem
    if training.get("gradient_checkpointing") and getattr(config, "peft_type", None) == "PREFIX_TUNING":
        raise ConfigError(
            "training.gradient_checkpointing",
            "is true, but prefix tuning (prefix, ptuning) hands its prefixes to every layer as a key-value cache, "
            "which the recomputed layers cannot take.",
            "Set training.gradient_checkpointing=false for this method.",
        )
    if getattr(config, "prefix_projection", False) and (n_stages > 1 or validation.get("early_stopping_patience")):
        raise ConfigError(
            "adaptation.method.prefix_projection",
            "a prefix saved from its MLP is stored as the prefixes alone, so training cannot resume from it "
            "(a later stage, or early stopping's best checkpoint).",
            "Use adaptation=ptuning (prefixes learned directly), or no sequence / early stopping.",
        )
