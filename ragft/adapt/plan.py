"""What an adapted arm trains on, and in which order.

A run trains in one or more *stages*. Each stage learns from one or more *sources* (task configs),
mixed by weight: `train_mix` mixes several tasks into the run's own stage (multi-task fine-tuning),
`sequence` lists stages trained before it, each from the previous stage's weights (sequential
fine-tuning). Without either, the run trains on its own task (or `train_task`) in one stage.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from ragft.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    name: str
    spec: DictConfig  # a task config node
    weight: float = 1.0


@dataclass(frozen=True)
class Stage:
    name: str
    sources: tuple[Source, ...]
    test_task: Source  # the task whose test set measures this stage
    size: int | None = None  # examples in the stage's mix; None = its sources' train splits summed


def training_stages(cfg: DictConfig) -> list[Stage]:
    """`sequence`'s stages in order, then the run's own stage (last: the run's test set measures it,
    and `train_mix.size` sizes its mix)."""
    stages = []
    for name, spec in (cfg.get("sequence") or {}).items():
        source = Source(name, spec)
        stages.append(Stage(name, (source,), test_task=source))
    size = (cfg.get("train_mix") or {}).get("size")
    stages.append(Stage(cfg.task.name, _own_sources(cfg), Source(cfg.task.name, cfg.task), size))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ConfigError(
            "sequence", f"stage names must differ, got {names}.", "Name each stage (sequence.<name>) uniquely."
        )
    return stages


def _own_sources(cfg: DictConfig) -> tuple[Source, ...]:
    mix = cfg.get("train_mix") or {}
    tasks: Mapping[str, Any] = mix.get("tasks") or {}
    if not tasks:
        spec = cfg.get("train_task") or cfg.task
        return (Source(cfg.task.name, spec),)
    weights = dict(mix.get("weights") or {})
    unknown = sorted(set(weights) - set(tasks))
    if unknown:
        raise ConfigError(
            "train_mix.weights", f"names tasks not in train_mix.tasks: {unknown}.", f"Mixed tasks: {sorted(tasks)}."
        )
    sources = []
    for name, spec in tasks.items():
        weight = float(weights.get(name, 1.0))
        if weight < 0:
            raise ConfigError(f"train_mix.weights.{name}", f"must be 0 or more, got {weight}.")
        if weight > 0:
            sources.append(Source(name, spec, weight))
    if not sources:
        raise ConfigError("train_mix.weights", "every weight is 0: nothing to train on.")
    return tuple(sources)


def mix(parts: Mapping[str, Sequence[Any]], weights: Mapping[str, float], size: int | None, seed: int) -> list[Any]:
    """Examples from each part in proportion to its weight: `size` in all (default: every part's
    examples summed), shares rounded so that they add up to `size` (largest remainders). A part asked
    for more than it holds is repeated (each example as evenly as possible); the result is shuffled."""
    if len(parts) == 1 and not size:
        return list(next(iter(parts.values())))
    total = int(size) if size else sum(len(p) for p in parts.values())
    wanted = _shares({name: weights[name] for name in parts}, total)
    rng = random.Random(seed)
    mixed: list[Any] = []
    for name, items in parts.items():
        if not items:
            raise ConfigError(f"train_mix.tasks.{name}", "has no training examples.")
        order = list(items)
        rng.shuffle(order)
        repeats, extra = divmod(wanted[name], len(order))
        if repeats:
            log.info("train_mix: %s repeated %d time(s) to give %d of %d examples", name, repeats, wanted[name], total)
        mixed += order * repeats + order[:extra]
    if len(parts) > 1:
        rng.shuffle(mixed)
    return mixed


def _shares(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """`total` split in proportion to `weights`, whole numbers that add up to `total`."""
    weight_sum = sum(weights.values())
    exact = {name: total * w / weight_sum for name, w in weights.items()}
    shares = {name: int(value) for name, value in exact.items()}
    for name in sorted(exact, key=lambda n: exact[n] - shares[n], reverse=True)[: total - sum(shares.values())]:
        shares[name] += 1
    return shares


def hold_out(items: Sequence[Any], share: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, validation): a seeded `share` of `items` held out for the validation loss."""
    if not 0 < share < 1:
        raise ConfigError("training.validation.holdout", f"must be between 0 and 1, got {share}.")
    order = list(items)
    random.Random(seed).shuffle(order)
    n = max(1, round(len(order) * share))
    if n >= len(order):
        raise ConfigError("training.validation.holdout", f"leaves no training example out of {len(order)}.")
    return order[n:], order[:n]


def instruction_choices(n_examples: int, n_instructions: int, seed: int) -> list[int]:
    """Which phrasing of the instruction each training example gets (`training.instruction_mix`):
    balanced across the template library, in a seeded order."""
    choices = [i % n_instructions for i in range(n_examples)]
    random.Random(seed).shuffle(choices)
    return choices
