"""Preference tuning: DPO and ORPO through TRL's trainers, a peft adapter trained on (prompt, chosen,
rejected) pairs of the train split.

DPO (Rafailov et al. 2023) trains after the supervised stage: the SFT adapter is merged into a fresh
base, a new adapter of the same method trains on the pairs, and the merged SFT model (the new adapter
disabled) is the reference whose log-probabilities the policy's are compared with. ORPO (Hong et al.
2024) needs no reference and trains in one stage from the base: the chosen response's likelihood plus
an odds-ratio term against the rejected one. Prompts are fitted and tokenised by ragft as for
supervised training (the prompts the model is served), so the trainers get token ids, not text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ragft.adapt.checkpoints import KeepsProgress
from ragft.adapt.features import feature, prompt_of
from ragft.adapt.methods import AdaptationMethod, peft_config
from ragft.models.loading import Generator
from ragft.types import Example, PreferencePair

# TrainingArguments (or a subclass, with its own settings) for this training: see ragft.adapt.arguments
ArgumentsFor = Callable[..., Any]


class ThroughTRL:
    """A preference objective (`adaptation.preference.objective`, `_target_`): `trainer` gives a Trainer
    over pairs of token ids (`pair_features`), training a new adapter of the method's peft config on the
    generator's model (the saved SFT adapter merged in first, where the objective trains after it). A new
    objective names its TRL trainer and arguments (`trl_trainer`)."""

    name: str
    after_sft: bool

    def trainer(
        self,
        generator: Generator,
        method: AdaptationMethod,
        start_from: Path | None,
        pairs: list[dict],
        args: ArgumentsFor,
    ) -> Any:
        model = generator.model if start_from is None else method.load(generator.model, start_from, merge=True)
        trainer_class, settings = self.trl_trainer(args, pairs)
        return trainer_class(
            model=model,
            args=settings,
            train_dataset=_dataset(pairs),
            processing_class=generator.tokenizer,
            peft_config=peft_config(method),
        )

    def trl_trainer(self, args: ArgumentsFor, pairs: list[dict]) -> tuple[type, Any]:
        """TRL's trainer class, taught ragft's token ids, and its arguments."""
        raise NotImplementedError


class DPO(ThroughTRL):
    """Direct preference optimisation (TRL's DPOTrainer) after SFT: `beta` weighs the pull towards the
    reference (the SFT model); `loss_type` is any of TRL's (sigmoid: the paper's)."""

    name = "dpo"

    def __init__(self, beta: float = 0.1, loss_type: str = "sigmoid", after_sft: bool = True) -> None:
        self.beta, self.loss_type, self.after_sft = beta, loss_type, after_sft

    def trl_trainer(self, args: ArgumentsFor, pairs: list[dict]) -> tuple[type, Any]:
        from trl import DPOConfig, DPOTrainer

        class TokenizedDPOTrainer(KeepsProgress, DPOTrainer):
            def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # noqa: ANN001
                return dataset  # already token ids, fitted as ragft fits every training prompt

        return TokenizedDPOTrainer, args(DPOConfig, beta=self.beta, loss_type=[self.loss_type], max_length=None)


class ORPO(ThroughTRL):
    """Odds-ratio preference optimisation (TRL's ORPOTrainer), one stage from the base: `beta` weighs
    the odds-ratio term against the chosen response's likelihood."""

    name = "orpo"

    def __init__(self, beta: float = 0.1, after_sft: bool = False) -> None:
        self.beta, self.after_sft = beta, after_sft

    def trl_trainer(self, args: ArgumentsFor, pairs: list[dict]) -> tuple[type, Any]:
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        class TokenizedORPOTrainer(KeepsProgress, ORPOTrainer):
            def tokenize_row(self, feature, model=None):  # noqa: ANN001
                return orpo_row(feature["prompt_ids"], feature["chosen_ids"], feature["rejected_ids"])

            def _track_num_input_tokens(self, inputs):  # noqa: ANN001
                """The tokens of both sequences of each pair (the batch has no single `input_ids`)."""
                masks = torch.cat([inputs[f"{side}_attention_mask"].flatten() for side in ("chosen", "rejected")])
                super()._track_num_input_tokens({"input_ids": masks, "attention_mask": masks})

        return TokenizedORPOTrainer, args(ORPOConfig, beta=self.beta, max_length=max(map(pair_length, pairs)))


def orpo_row(prompt: list[int], chosen: list[int], rejected: list[int]) -> dict[str, list[int]]:
    """The columns TRL's ORPO collator pads, from token ids: the prompt's labels masked."""
    row = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for name, response in (("chosen", chosen), ("rejected", rejected)):
        sequence = feature(prompt, response)
        row[f"{name}_input_ids"], row[f"{name}_labels"] = sequence["input_ids"], sequence["labels"]
        row[f"{name}_attention_mask"] = [1] * len(sequence["input_ids"])
    return row


def pair_features(
    pairs: Sequence[PreferencePair],
    fitted: Callable[[Sequence[Example]], list[dict[str, list[int]]]],
    tokenizer: Any,
    max_length: int,
) -> list[dict]:
    """Token ids of each pair: the prompt fitted (`fitted`: supervised features of examples, as the run
    builds them) so that it leaves room for the longer response, then both responses with their end token."""

    def ids(text: str) -> list[int]:
        return tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]

    chosen, rejected = [ids(p.chosen) for p in pairs], [ids(p.rejected) for p in pairs]
    longer = [
        replace(p.example, reference=p.chosen if len(c) >= len(r) else p.rejected)
        for p, c, r in zip(pairs, chosen, rejected)
    ]
    features = []
    for pair, fitted_pair, c, r in zip(pairs, fitted(longer), chosen, rejected):
        prompt = prompt_of(fitted_pair)
        room = max_length - len(prompt)
        features.append({"id": pair.example.id, "prompt_ids": prompt, "chosen_ids": c[:room], "rejected_ids": r[:room]})
    return features


def pair_length(pair: dict) -> int:
    """The tokens of a pair's longer sequence: its prompt and the longer of its two responses."""
    return len(pair["prompt_ids"]) + max(len(pair["chosen_ids"]), len(pair["rejected_ids"]))


def _dataset(pairs: list[dict]) -> Any:
    from datasets import Dataset

    rows = [{**p, "length": pair_length(p)} for p in pairs]
    return Dataset.from_list(rows)
