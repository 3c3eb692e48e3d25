"""Which split each example belongs to, without rewriting the file: the file's split values mapped to
ragft's split names (`task.data.splits`: `validation: dev`, `test: [test1, test2]`), or, where the file has
no split field, a seeded split made from it (`task.data.split_by`), stratified by a field if asked."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ragft.errors import ConfigError
from ragft.types import Example

log = logging.getLogger(__name__)

MADE_SPLITS = ("validation", "test")  # the shares split_by takes; train keeps the rest


def assign_splits(
    rows: Sequence[tuple[str, Example]],
    mapping: Mapping[str, Any] | None,
    split_by: Mapping[str, Any] | None,
    file_name: str,
    key: str = "task",
) -> dict[str, list[Example]]:
    """The examples by split name, each split in the file's order. `rows` pairs each example with its split
    value in the file (ignored under `split_by`). Without a mapping a split is named by its value."""
    if split_by:
        if mapping:
            raise ConfigError(
                f"{key}.data.splits",
                "maps the file's split values, but split_by makes the splits (the file has no split field).",
                "Keep one of them.",
            )
        return split_examples([e for _, e in rows], split_by, f"{key}.data.split_by")
    if not mapping:
        by_value: dict[str, list[Example]] = {}
        for value, example in rows:
            by_value.setdefault(value, []).append(example)
        return by_value
    owner = _split_of_value(mapping, {value for value, _ in rows}, file_name, f"{key}.data.splits")
    splits: dict[str, list[Example]] = {name: [] for name in mapping}
    left_out: dict[str, int] = {}
    for value, example in rows:
        if value in owner:
            splits[owner[value]].append(example)
        else:
            left_out[value] = left_out.get(value, 0) + 1
    if left_out:
        counted = ", ".join(f"'{value}' ({n})" for value, n in sorted(left_out.items()))
        log.info(
            "%s.data.splits maps no split to the values %s of %s: those examples are left out", key, counted, file_name
        )
    return splits


def _split_of_value(mapping: Mapping[str, Any], present: set[str], file_name: str, key: str) -> dict[str, str]:
    """file value -> split name; a ConfigError for a value the file lacks or one mapped twice."""
    owner: dict[str, str] = {}
    for name, values in mapping.items():
        for value in [values] if isinstance(values, (str, int)) else values:
            value = str(value)
            if value in owner:
                raise ConfigError(
                    f"{key}.{name}",
                    f"the file's split '{value}' is already mapped to '{owner[value]}'.",
                    "Map each of the file's split values to one split.",
                )
            if value not in present:
                close = difflib.get_close_matches(value, sorted(present), n=1)
                hint = f"Did you mean '{close[0]}'? " if close else ""
                raise ConfigError(
                    f"{key}.{name}",
                    f"'{value}' is not a split value of {file_name}.",
                    f"{hint}Its split values are: {', '.join(sorted(present))}.",
                )
            owner[value] = name
    return owner


def split_examples(examples: Sequence[Example], split_by: Mapping[str, Any], key: str) -> dict[str, list[Example]]:
    """A seeded train/validation/test split: `split_by.validation` and `split_by.test` are the shares of
    the examples (of each stratum, where `split_by.stratify` names `category` or a breakdown), train the
    rest. Within a stratum the examples are ordered by id before the seeded shuffle, so the split does not
    depend on the file's order; each split keeps the file's order."""
    shares = {name: float(split_by.get(name) or 0.0) for name in MADE_SPLITS}
    if sum(shares.values()) >= 1:
        raise ConfigError(
            key, f"validation and test take {sum(shares.values()):g} of the examples.", "Leave train some."
        )
    strata = [stratum for _, stratum in sorted(_strata(examples, split_by.get("stratify"), key).items())]
    counts = _allocated(shares, [len(stratum) for stratum in strata])
    rng = np.random.default_rng(int(split_by.get("seed") or 0))
    assigned: dict[str, str] = {}
    for stratum, stratum_counts in zip(strata, counts):
        ids = sorted(e.id for e in stratum)
        order = [ids[i] for i in rng.permutation(len(ids))]
        start = 0
        for name, count in stratum_counts.items():
            assigned.update(dict.fromkeys(order[start : start + count], name))
            start += count
        assigned.update(dict.fromkeys(order[start:], "train"))
    splits: dict[str, list[Example]] = {"train": [], **{name: [] for name in MADE_SPLITS}}
    for example in examples:
        splits[assigned[example.id]].append(example)
    log.info("%s: %s", key, ", ".join(f"{name} {len(members)}" for name, members in splits.items()))
    return splits


def _allocated(shares: Mapping[str, float], sizes: Sequence[int]) -> list[dict[str, int]]:
    """How many examples of each stratum each split takes: in all, its share of the examples (rounded half
    up); per stratum, its share rounded down, the rest given to the strata with the largest remainders
    that still have examples to give (so small strata do not round a split away)."""
    taken = [dict.fromkeys(shares, 0) for _ in sizes]
    left = list(sizes)
    for name, share in shares.items():
        exact = [share * size for size in sizes]
        for i, want in enumerate(exact):
            taken[i][name] = min(int(want), left[i])
        short = int(share * sum(sizes) + 0.5) - sum(t[name] for t in taken)
        by_remainder = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - int(exact[i])), i))
        for i in by_remainder:
            if short <= 0:
                break
            if taken[i][name] < left[i]:
                taken[i][name] += 1
                short -= 1
        for i in range(len(sizes)):
            left[i] -= taken[i][name]
    return taken


def _strata(examples: Sequence[Example], stratify: str | None, key: str) -> dict[str, list[Example]]:
    if not stratify:
        return {"": list(examples)}
    if stratify == "category" and not any(e.category for e in examples):
        raise ConfigError(
            f"{key}.stratify",
            "the examples have no category.",
            f"Map {key.removesuffix('.split_by')}.fields.category to a field of the file.",
        )
    strata: dict[str, list[Example]] = {}
    for example in examples:
        if stratify == "category":
            value = example.category
        elif stratify in example.breakdowns:
            value = example.breakdowns[stratify]
        else:
            raise ConfigError(
                f"{key}.stratify",
                f"'{stratify}' is not a grouping of the examples.",
                f"Stratify by `category` or a name of {key.removesuffix('.split_by')}.breakdowns.",
            )
        strata.setdefault(value, []).append(example)
    return strata
