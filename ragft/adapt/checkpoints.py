"""Resuming a training an interrupted attempt left: which checkpoint to resume from, the training time
and loss of the attempts before it (so that the run records the whole training's), and the order of
the resumed epoch's batches.

The Trainer restores the weights, optimizer, scheduler and RNG of the checkpoint, but the length-grouped
sampler draws an epoch's order from the global RNG when the epoch starts: resumed in the middle of an
epoch, it would draw another order and train the rest of the epoch on other batches. Each checkpoint
therefore also keeps the RNG state at its epoch's start, and the resumed epoch starts from it again.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

PROGRESS_FILE = "ragft_progress.json"  # beside the Trainer's own files in each checkpoint
EPOCH_RNG_FILE = "ragft_epoch_rng.pt"  # the CPU RNG state as the checkpoint's epoch began
STATE_FILE = "trainer_state.json"  # the Trainer writes it last: a checkpoint holding it is whole


def last_checkpoint(folder: Path | None) -> Path | None:
    """The newest whole checkpoint (`checkpoint-<step>` holding the Trainer's state) in `folder`, if any."""
    if folder is None or not folder.is_dir():
        return None
    steps = {int(m.group(1)): p for p in folder.iterdir() if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))}
    whole = [step for step in steps if (steps[step] / STATE_FILE).is_file()]
    return steps[max(whole)] if whole else None


@dataclass
class TrainingProgress:
    """The attempts before this one, as the checkpoint it resumes from recorded them."""

    step: int = 0  # the optimizer step this attempt resumes from (0: it starts the training)
    earlier_s: float = 0.0  # their training time, up to that checkpoint
    earlier_loss_sum: float | None = 0.0  # their summed step losses (None: not recorded with the checkpoint)
    started: float = field(default_factory=time.perf_counter)
    resumed_epoch_rng: torch.Tensor | None = None  # the resumed epoch's RNG state at its start
    epoch_rng: torch.Tensor | None = None  # the current epoch's

    @classmethod
    def load(cls, checkpoint: Path | None) -> TrainingProgress:
        if checkpoint is None:
            return cls()
        step = int(json.loads((checkpoint / STATE_FILE).read_text())["global_step"])
        epoch_rng = torch.load(checkpoint / EPOCH_RNG_FILE) if (checkpoint / EPOCH_RNG_FILE).is_file() else None
        try:
            saved = json.loads((checkpoint / PROGRESS_FILE).read_text())
            return cls(step, float(saved["train_s"]), float(saved["loss_sum"]), resumed_epoch_rng=epoch_rng)
        except (OSError, ValueError, KeyError):  # killed between the Trainer's files and these
            return cls(step, 0.0, None, resumed_epoch_rng=epoch_rng)

    def begin_epoch(self) -> None:
        """At an epoch's start, before its order is drawn: the resumed epoch draws the order it drew before."""
        if self.resumed_epoch_rng is not None:
            torch.set_rng_state(self.resumed_epoch_rng)
            self.resumed_epoch_rng = None
        self.epoch_rng = torch.get_rng_state()

    def save(self, checkpoint: Path, loss_sum: float) -> None:
        """Record, in a checkpoint just written, the training time and summed loss up to it (`loss_sum`:
        this attempt's) and its epoch's starting RNG state."""
        if self.epoch_rng is not None:
            torch.save(self.epoch_rng, checkpoint / EPOCH_RNG_FILE)
        earlier = self.earlier_loss_sum or 0.0
        progress = {"train_s": self.earlier_s + time.perf_counter() - self.started, "loss_sum": earlier + loss_sum}
        (checkpoint / PROGRESS_FILE).write_text(json.dumps(progress))

    def total(self, attempt_loss: float, global_step: int) -> tuple[float, float]:
        """The whole training's time and mean step loss, given this attempt's mean loss (the Trainer's
        `training_loss` covers only the steps this attempt trained)."""
        train_s = self.earlier_s + time.perf_counter() - self.started
        if self.earlier_loss_sum is None or global_step <= 0:
            return train_s, attempt_loss
        return train_s, (self.earlier_loss_sum + attempt_loss * (global_step - self.step)) / global_step


class KeepsProgress:
    """A Trainer mixin: each checkpoint also keeps the training time and loss of every attempt so far
    (`checkpoints.PROGRESS_FILE`), so that a resumed training records the whole training's."""

    progress = TrainingProgress()

    def _save_checkpoint(self, model, trial):  # noqa: ANN001
        super()._save_checkpoint(model, trial)  # type: ignore[misc]
        trainer: Any = self  # mixed into a transformers Trainer
        if trainer.args.should_save:
            loss = trainer._total_loss_scalar + float(getattr(trainer, "_tr_loss", 0.0))
            checkpoint = Path(str(trainer.args.output_dir)) / f"checkpoint-{trainer.state.global_step}"
            self.progress.save(checkpoint, loss)


def epoch_start_callback(progress: TrainingProgress) -> Any:
    """A Trainer callback calling `progress.begin_epoch` as each epoch begins."""
    from transformers import TrainerCallback

    class EpochStart(TrainerCallback):
        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress.begin_epoch()

    return EpochStart()
