"""The HF Trainer's arguments from the `training` config, for supervised and preference training alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig

from ragft.models.loading import compute_dtype


def training_arguments(
    cfg: DictConfig,
    output_dir: str,
    device: torch.device,
    validates: bool = False,
    checkpoints: bool = False,
    arguments: Callable[..., Any] | None = None,
    **extra: Any,
) -> Any:
    """HF TrainingArguments (or `arguments`, a subclass such as TRL's DPOConfig, with its `extra`
    settings) from the `training` config. `gradient_checkpointing` is the Trainer's activation
    checkpointing (non-reentrant; transformers makes the frozen embeddings' output require grad, which
    peft adapters need). Saving and evaluation: see `saving_and_evaluation`."""
    from transformers import TrainingArguments

    return (arguments or TrainingArguments)(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps else -1,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps,
        activation_checkpointing=bool(cfg.get("gradient_checkpointing", False)),
        lr_scheduler_type=cfg.lr_scheduler,
        logging_steps=cfg.logging_steps,
        report_to=[],
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=compute_dtype(device) == torch.bfloat16,
        use_cpu=device.type == "cpu",
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length",
        remove_unused_columns=False,
        disable_tqdm=False,
        include_num_input_tokens_seen="non_padding",
        **saving_and_evaluation(cfg, validates, checkpoints),
        **extra,
    )


def saving_and_evaluation(cfg: DictConfig, validates: bool, checkpoints: bool) -> dict[str, Any]:
    """With `checkpoints`, the whole training state (weights or adapter, optimizer, scheduler, RNG) is
    saved every `training.checkpoint_steps`, the last one kept. With validation data, the validation
    loss is logged (each epoch or every `validation.eval_steps`) and early stopping saves at every
    evaluation and keeps the best weights."""
    save_every = cfg.get("checkpoint_steps") if checkpoints else None
    settings: dict[str, Any] = (
        {"save_strategy": "steps", "save_steps": save_every, "save_total_limit": 1}
        if save_every
        else {"save_strategy": "no"}
    )
    if not validates:
        return settings
    every = cfg.validation.get("eval_steps")
    strategy = "steps" if every else "epoch"
    settings.update(eval_strategy=strategy, eval_steps=every, per_device_eval_batch_size=cfg.batch_size)
    if cfg.validation.get("early_stopping_patience"):
        settings.update(
            save_strategy=strategy,
            save_steps=every,
            save_total_limit=1,
            save_only_model=not checkpoints,
            load_best_model_at_end=True,
            metric_for_best_model="eval_loss",
            greater_is_better=False,
        )
    return settings
