"""Task data: read examples and the retrieval corpus from JSONL, CSV, Parquet or saved `datasets`
folders, with a field mapping; errors name the file, the line or row, and the field."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ragft.errors import ConfigError, DataError
from ragft.types import Example, Passage, TaskData

REQUIRED_SPLITS = ("train", "test")
REQUIRED_FIELDS = ("id", "input", "reference", "split")


def read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(path, f"not valid JSON ({err.msg}, column {err.colno})", f"line {number}") from None
            if not isinstance(record, dict):
                raise DataError(path, "expected a JSON object per line", f"line {number}")
            yield f"line {number}", record


def read_csv(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every cell as text (list fields may hold a JSON list); row numbers count data rows, header excluded."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for number, record in enumerate(frame.to_dict(orient="records"), start=1):
        yield f"row {number}", record


def read_parquet(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    frame = pd.read_parquet(path)
    for number, record in enumerate(frame.to_dict(orient="records"), start=1):
        yield f"row {number}", {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in record.items()}


def read_hf_dataset(path: Path, split_field: str = "split") -> Iterator[tuple[str, dict[str, Any]]]:
    """A Hugging Face `datasets` Dataset or DatasetDict saved with `save_to_disk`; a DatasetDict's keys
    give the split where the rows have no split field of their own."""
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(path))
    parts = data.items() if isinstance(data, DatasetDict) else [(None, data)]
    for split, dataset in parts:
        for number, record in enumerate(dataset, start=1):
            if split is not None:
                record.setdefault(split_field, split)
            yield (f"split {split}, row {number}" if split else f"row {number}"), record


READERS: dict[str, Callable[[Path], Iterator[tuple[str, dict[str, Any]]]]] = {
    ".jsonl": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
}


def read_records(path: str | Path, config_key: str, split_field: str = "split") -> Iterator[tuple[str, dict[str, Any]]]:
    """(place, record) pairs from a JSONL, CSV or Parquet file, or a folder saved by `datasets`."""
    path = Path(path)
    if path.is_dir():
        if not (path / "dataset_dict.json").is_file() and not (path / "dataset_info.json").is_file():
            raise ConfigError(config_key, f"'{path}' is a folder but not one saved by datasets' save_to_disk.")
        return read_hf_dataset(path, split_field)
    if not path.is_file():
        raise ConfigError(config_key, f"data file '{path}' does not exist.", "Point it at an existing file.")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ConfigError(
            config_key,
            f"cannot read '{path.name}': unknown format '{path.suffix}'.",
            f"Use one of {sorted(READERS)} or a folder saved by datasets' save_to_disk.",
        )
    return reader(path)


def _field(record: Mapping[str, Any], name: str, path: Path, where: str, expected: type | tuple[type, ...]) -> Any:
    if name not in record:
        raise DataError(path, f"missing (present: {', '.join(sorted(record))})", where, field=name)
    value = record[name]
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        raise DataError(path, "empty", where, field=name)
    if expected in (list, dict) and isinstance(value, str):  # a list or mapping in a CSV cell, as JSON
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(path, f"expected a JSON {expected.__name__}", where, field=name) from None
    if not isinstance(value, expected):
        kind = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
        raise DataError(path, f"expected {kind}, got {type(value).__name__}", where, field=name)
    return value


def load_examples(
    path: str | Path,
    fields: Mapping[str, str | None],
    config_key: str = "task.data.path",
    breakdowns: Mapping[str, str] | None = None,
) -> dict[str, list[Example]]:
    """Read examples grouped by split from any format `read_records` knows.

    `fields` maps ragft's names (id, input, reference, split, and optionally category, gold_passages,
    facts) to the file's field names; a null optional name means the file has no such field.
    `breakdowns` maps the name of each further grouping the report breaks its headline down by (e.g.
    `knowledge`) to the file's field; every example must have it.
    """
    path = Path(path)
    required = _required_fields(fields)
    splits: dict[str, list[Example]] = {}
    first_seen: dict[str, str] = {}
    for line, record in read_records(path, config_key, required["split"]):
        split = str(_field(record, required["split"], path, line, str))
        optional: dict[str, tuple[str | None, type | tuple[type, ...], Any]] = {
            "category": (fields.get("category"), (str, bool, int), ""),  # a flag or a number names a group too
            "gold_passages": (fields.get("gold_passages"), list, []),
            "facts": (fields.get("facts"), dict, {}),
        }
        values = {
            key: (_field(record, name, path, line, kind) if name else default)
            for key, (name, kind, default) in optional.items()
        }
        example = Example(
            id=str(_field(record, required["id"], path, line, (str, int))),
            input=_field(record, required["input"], path, line, str),
            reference=str(_field(record, required["reference"], path, line, (str, int, float))),
            category=str(values["category"]),
            gold_passages=tuple(str(p) for p in values["gold_passages"]),
            facts={str(k): str(v) for k, v in values["facts"].items()},
            breakdowns={
                name: str(_field(record, column, path, line, (str, bool, int)))
                for name, column in (breakdowns or {}).items()
            },
        )
        if example.id in first_seen:
            raise DataError(
                path, f"duplicate id '{example.id}' (first at {first_seen[example.id]})", line, field=required["id"]
            )
        first_seen[example.id] = line
        splits.setdefault(split, []).append(example)
    return splits


def _required_fields(fields: Mapping[str, str | None]) -> dict[str, str]:
    """The file's field for each of `REQUIRED_FIELDS`; a ConfigError where one is not mapped."""
    mapped = {name: fields.get(name) for name in REQUIRED_FIELDS}
    missing = [name for name, field in mapped.items() if not field]
    if missing:
        raise ConfigError(
            "task.data.fields",
            f"no mapping for {missing}.",
            "Map each of id, input, reference and split to a field of the data file.",
        )
    return {name: field for name, field in mapped.items() if field}


def load_corpus(
    path: str | Path, id_field: str = "id", text_field: str = "text", config_key: str = "task.corpus.path"
) -> list[Passage]:
    path = Path(path)
    passages = [
        Passage(id=str(_field(r, id_field, path, line, (str, int))), text=_field(r, text_field, path, line, str))
        for line, r in read_records(path, config_key)
    ]
    if not passages:
        raise DataError(path, "the corpus is empty")
    return passages


def load_task(
    name: str,
    data: Mapping[str, Any],
    corpus: Mapping[str, Any] | None,
    limits: Mapping[str, int | None] | None = None,
    required: Sequence[str] = REQUIRED_SPLITS,
) -> TaskData:
    """Build a task from its `task.data` and `task.corpus` config sections.

    `data.categories` keeps only the examples of those categories (e.g. one specialty); `limits` then
    caps each split to its first n examples (the default experiment's size knob). `required` names
    the splits that must not be empty (a test set scored only for forgetting needs no train split).
    """
    splits = load_examples(data["path"], data["fields"], breakdowns=data.get("breakdowns"))
    if data.get("categories"):
        splits = _only_categories(splits, data["categories"], data["path"])
    for split in required:
        if not splits.get(split):
            raise DataError(
                data["path"],
                f"no examples in split '{split}' (found splits: {sorted(splits)})",
                field=data["fields"]["split"],
            )
    for split, limit in (limits or {}).items():
        if limit is not None:
            if split not in splits:
                raise ConfigError(f"task.limits.{split}", f"unknown split; expected one of {sorted(splits)}.")
            splits[split] = splits[split][: int(limit)]
    passages = (
        load_corpus(corpus["path"], corpus.get("id_field", "id"), corpus.get("text_field", "text")) if corpus else []
    )
    if corpus and corpus.get("exclude"):
        passages = withdraw(passages, corpus["exclude"])
    return TaskData(name=name, splits=splits, corpus=passages)


def task_from_config(spec: Mapping[str, Any], required: Sequence[str] = REQUIRED_SPLITS) -> TaskData:
    """`load_task` for a task config node (`task`, an adapter's `train_task`, a training stage, ...)."""
    return load_task(spec["name"], spec["data"], spec.get("corpus"), spec.get("limits"), required)


def _only_categories(
    splits: dict[str, list[Example]], categories: Sequence[str], path: str | Path
) -> dict[str, list[Example]]:
    wanted = {str(c) for c in categories}
    present = {e.category for examples in splits.values() for e in examples}
    if wanted - present:
        raise ConfigError(
            "task.data.categories",
            f"{sorted(wanted - present)} not among the categories of {Path(path).name}.",
            f"Choose from {sorted(present)}.",
        )
    return {split: [e for e in examples if e.category in wanted] for split, examples in splits.items()}


def withdraw(passages: list[Passage], ids: Sequence[str]) -> list[Passage]:
    """The corpus without the documents `ids` (`task.corpus.exclude`: a withdrawn protocol)."""
    withdrawn = set(ids)
    unknown = sorted(withdrawn - {p.id for p in passages})
    if unknown:
        raise ConfigError("task.corpus.exclude", f"names documents the corpus does not have: {unknown}.")
    return [p for p in passages if p.id not in withdrawn]
