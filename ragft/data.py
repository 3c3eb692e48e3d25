"""Task data: read examples and the retrieval corpus from JSONL files with a field mapping."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ragft.errors import ConfigError, DataError
from ragft.types import Example, Passage, TaskData

REQUIRED_SPLITS = ("train", "test")
REQUIRED_FIELDS = ("id", "input", "reference", "split")


def read_jsonl(path: str | Path, config_key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) for each non-empty line; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(config_key, f"data file '{path}' does not exist.", "Point it at an existing JSONL file.")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(path, f"not valid JSON ({err.msg}, column {err.colno})", line=number) from None
            if not isinstance(record, dict):
                raise DataError(path, "expected a JSON object per line", line=number)
            yield number, record


def _field(record: Mapping[str, Any], name: str, path: Path, line: int, expected: type | tuple[type, ...]) -> Any:
    if name not in record:
        raise DataError(path, f"missing (present: {', '.join(sorted(record))})", line=line, field=name)
    value = record[name]
    if not isinstance(value, expected):
        raise DataError(
            path,
            f"expected {getattr(expected, '__name__', expected)}, got {type(value).__name__}",
            line=line,
            field=name,
        )
    return value


def load_examples(
    path: str | Path,
    fields: Mapping[str, str | None],
    config_key: str = "task.data.path",
) -> dict[str, list[Example]]:
    """Read a JSONL file into examples grouped by split.

    `fields` maps ragft's names (id, input, reference, split, and optionally category, gold_passages,
    facts) to the file's field names; a null optional name means the file has no such field.
    """
    path = Path(path)
    missing = [name for name in REQUIRED_FIELDS if not fields.get(name)]
    if missing:
        raise ConfigError(
            "task.data.fields",
            f"no mapping for {missing}.",
            "Map each of id, input, reference and split to a field of the data file.",
        )
    splits: dict[str, list[Example]] = {}
    first_line: dict[str, int] = {}
    for line, record in read_jsonl(path, config_key):
        split = str(_field(record, fields["split"], path, line, str))
        optional = {
            "category": (fields.get("category"), str, ""),
            "gold_passages": (fields.get("gold_passages"), list, []),
            "facts": (fields.get("facts"), dict, {}),
        }
        values = {
            key: (_field(record, name, path, line, kind) if name else default)
            for key, (name, kind, default) in optional.items()
        }
        example = Example(
            id=str(_field(record, fields["id"], path, line, (str, int))),
            input=_field(record, fields["input"], path, line, str),
            reference=str(_field(record, fields["reference"], path, line, (str, int, float))),
            category=values["category"],
            gold_passages=tuple(str(p) for p in values["gold_passages"]),
            facts={str(k): str(v) for k, v in values["facts"].items()},
        )
        if example.id in first_line:
            raise DataError(
                path,
                f"duplicate id '{example.id}' (first on line {first_line[example.id]})",
                line=line,
                field=fields["id"],
            )
        first_line[example.id] = line
        splits.setdefault(split, []).append(example)
    return splits


def load_corpus(
    path: str | Path, id_field: str = "id", text_field: str = "text", config_key: str = "task.corpus.path"
) -> list[Passage]:
    path = Path(path)
    passages = [
        Passage(id=str(_field(r, id_field, path, line, (str, int))), text=_field(r, text_field, path, line, str))
        for line, r in read_jsonl(path, config_key)
    ]
    if not passages:
        raise DataError(path, "the corpus is empty")
    return passages


def load_task(
    name: str, data: Mapping[str, Any], corpus: Mapping[str, Any] | None, limits: Mapping[str, int | None] | None = None
) -> TaskData:
    """Build a task from its `task.data` and `task.corpus` config sections.

    `limits` caps each split to its first n examples (the default experiment's size knob).
    """
    splits = load_examples(data["path"], data["fields"])
    for split in REQUIRED_SPLITS:
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
    return TaskData(name=name, splits=splits, corpus=passages)
