"""Task data: examples and the retrieval corpus read from any file ragft.data.files reads, with a
field mapping; errors name the file, the line or row, and the field."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ragft.data.files import empty_error, read_records
from ragft.errors import ConfigError, DataError
from ragft.types import Example, Passage, TaskData

REQUIRED_SPLITS = ("train", "test")
REQUIRED_FIELDS = ("id", "input", "reference", "split")


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
    encoding: str = "utf-8",
) -> dict[str, list[Example]]:
    """Read examples grouped by split from any format `read_records` knows.

    `fields` maps ragft's names (id, input, reference, split, and optionally category, gold_passages,
    facts) to the file's field names; a null optional name means the file has no such field.
    `breakdowns` maps the name of each further grouping the report breaks its headline down by (e.g.
    `knowledge`) to the file's field; every example must have it. `encoding`: a text file's encoding.
    """
    splits, _ = _read_examples(Path(path), fields, config_key, breakdowns, encoding)
    return splits


def _read_examples(
    path: Path,
    fields: Mapping[str, str | None],
    config_key: str,
    breakdowns: Mapping[str, str] | None,
    encoding: str,
) -> tuple[dict[str, list[Example]], dict[str, str]]:
    """`load_examples`, and where each example is in the file (id -> line or row), in the file's order."""
    required = _required_fields(fields)
    splits: dict[str, list[Example]] = {}
    first_seen: dict[str, str] = {}
    for line, record in read_records(path, config_key, required["split"], encoding):
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
    if not first_seen:
        raise empty_error(path, "examples")
    return splits, first_seen


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
    path: str | Path,
    id_field: str = "id",
    text_field: str = "text",
    config_key: str = "task.corpus.path",
    encoding: str = "utf-8",
) -> list[Passage]:
    """The corpus's documents, in the file's order; an id used twice is a DataError naming both places."""
    path = Path(path)
    passages: list[Passage] = []
    first_seen: dict[str, str] = {}
    for line, record in read_records(path, config_key, encoding=encoding):
        passage = Passage(
            id=str(_field(record, id_field, path, line, (str, int))), text=_field(record, text_field, path, line, str)
        )
        if passage.id in first_seen:
            raise DataError(path, f"duplicate id '{passage.id}' (first at {first_seen[passage.id]})", line, id_field)
        first_seen[passage.id] = line
        passages.append(passage)
    if not passages:
        raise empty_error(path, "passages")
    return passages


def load_task(
    name: str,
    data: Mapping[str, Any],
    corpus: Mapping[str, Any] | None,
    limits: Mapping[str, int | None] | None = None,
    required: Sequence[str] = REQUIRED_SPLITS,
    key: str = "task",
) -> TaskData:
    """Build a task from its `data` and `corpus` config sections; errors name settings under `key` (the
    task's place in the config: `task`, `train_task`, `evaluate_also.general_qa`, ...).

    `data.categories` keeps only the examples of those categories (e.g. one specialty); `limits` then
    caps each split to its first n examples (the default experiment's size knob). `required` names
    the splits that must not be empty (a test set scored only for forgetting needs no train split).
    Every example's gold passages must be documents of the corpus file (before `corpus.exclude` takes
    withdrawn documents out of the index: their examples keep their gold ids).
    """
    path = Path(data["path"])
    splits, places = _read_examples(
        path, data["fields"], f"{key}.data.path", data.get("breakdowns"), data.get("encoding", "utf-8")
    )
    everything = dict(splits)  # the gold check reads every example, whatever the categories and limits keep
    if data.get("categories"):
        splits = _only_categories(splits, data["categories"], data["path"], key)
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
                raise ConfigError(f"{key}.limits.{split}", f"unknown split; expected one of {sorted(splits)}.")
            splits[split] = splits[split][: int(limit)]
    located = {example_id: f"{path}, {place}" for example_id, place in places.items()}
    if not corpus:
        return TaskData(name=name, splits=splits, corpus=[], places=located)
    corpus_path = Path(corpus["path"])
    id_field, text_field = corpus.get("id_field", "id"), corpus.get("text_field", "text")
    encoding = corpus.get("encoding", "utf-8")
    passages = load_corpus(corpus_path, id_field, text_field, f"{key}.corpus.path", encoding)
    check_gold_passages(everything, places, passages, path, data["fields"].get("gold_passages"), corpus_path, key)
    if corpus.get("exclude"):
        passages = withdraw(passages, corpus["exclude"], f"{key}.corpus.exclude")
    return TaskData(name=name, splits=splits, corpus=passages, places=located)


def check_gold_passages(
    splits: Mapping[str, Sequence[Example]],
    places: Mapping[str, str],
    passages: Sequence[Passage],
    path: Path,
    field: str | None,
    corpus_path: Path,
    key: str = "task",
) -> None:
    """A DataError at the first example (in the file's order) whose gold passages name a document the
    corpus file does not have; it counts the others and, when no gold id at all matches, says to check
    the corpus's id field."""
    documents = {p.id for p in passages}
    by_id = {e.id: e for examples in splits.values() for e in examples}
    unknown = {example_id: [d for d in by_id[example_id].gold_passages if d not in documents] for example_id in places}
    wrong = [example_id for example_id, ids in unknown.items() if ids]
    if not wrong:
        return
    first = wrong[0]
    named = ", ".join(f"'{d}'" for d in unknown[first])
    problem = (
        f"unknown gold passage {named}: not a document of {corpus_path.name}"
        if len(unknown[first]) == 1
        else f"unknown gold passages {named}: not documents of {corpus_path.name}"
    )
    if len(wrong) > 1:
        problem += f"; {len(wrong) - 1} more examples name documents it lacks"
    if not any(d in documents for e in by_id.values() for d in e.gold_passages):
        problem += f"; no example's gold passage is in it: check {key}.corpus.path and {key}.corpus.id_field"
    raise DataError(path, problem, f"{places[first]} (example '{first}')", field)


def task_from_config(spec: Mapping[str, Any], required: Sequence[str] = REQUIRED_SPLITS) -> TaskData:
    """`load_task` for a task config node (`task`, an adapter's `train_task`, a training stage, ...);
    errors name the node's own keys (`evaluate_also.general_qa.data.encoding`)."""
    key = str(spec._get_full_key(None)) if isinstance(spec, DictConfig) else ""
    return load_task(spec["name"], spec["data"], spec.get("corpus"), spec.get("limits"), required, key or "task")


def _only_categories(
    splits: dict[str, list[Example]], categories: Sequence[str], path: str | Path, key: str = "task"
) -> dict[str, list[Example]]:
    wanted = {str(c) for c in categories}
    present = {e.category for examples in splits.values() for e in examples}
    if wanted - present:
        raise ConfigError(
            f"{key}.data.categories",
            f"{sorted(wanted - present)} not among the categories of {Path(path).name}.",
            f"Choose from {sorted(present)}.",
        )
    return {split: [e for e in examples if e.category in wanted] for split, examples in splits.items()}


def withdraw(passages: list[Passage], ids: Sequence[str], config_key: str = "task.corpus.exclude") -> list[Passage]:
    """The corpus without the documents `ids` (`task.corpus.exclude`: a withdrawn protocol)."""
    withdrawn = set(ids)
    unknown = sorted(withdrawn - {p.id for p in passages})
    if unknown:
        raise ConfigError(config_key, f"names documents the corpus does not have: {unknown}.")
    return [p for p in passages if p.id not in withdrawn]
