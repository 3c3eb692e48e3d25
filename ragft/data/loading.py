"""Task data: examples and the retrieval corpus read from any file ragft.data.files reads, with a
field mapping; errors name the file, the line or row, and the field."""

from __future__ import annotations

import difflib
import json
import math
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ragft.data.files import empty_error, read_records
from ragft.data.splits import assign_splits
from ragft.errors import ConfigError, DataError
from ragft.types import Example, Passage, TaskData

REQUIRED_SPLITS = ("train", "test")
REQUIRED_FIELDS = ("id", "input", "reference", "split")  # split: unless task.data.split_by makes one


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


def _template_field(record: Mapping[str, Any], name: str, path: Path, where: str, key: str) -> str:
    """A record field the prompt template names, as text; a missing one is located and named as the
    template's."""
    if name not in record:
        close = difflib.get_close_matches(name, sorted(record), n=1)
        hint = f"; did you mean {{{close[0]}}}?" if close else ""
        problem = f"missing, and {key}.template.input_format names it{hint} (present: {', '.join(sorted(record))})"
        raise DataError(path, problem, where, field=name)
    return str(_field(record, name, path, where, (str, int, float, bool)))


def _id_list(record: Mapping[str, Any], name: str, path: Path, where: str, separator: str | None) -> tuple[str, ...]:
    """Ids given as a list (a JSON list in a CSV cell), a single id, or one string of ids joined by
    `separator` (`task.data.list_separator`)."""
    value = _field(record, name, path, where, (list, str, int))
    if isinstance(value, str) and value.lstrip().startswith("["):
        value = _field({name: value}, name, path, where, list)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    if isinstance(value, str) and separator:
        return tuple(part.strip() for part in value.split(separator) if part.strip())
    return (str(value).strip(),)


def load_examples(
    data: Mapping[str, Any], key: str = "task", template_fields: Sequence[str] = ()
) -> dict[str, list[Example]]:
    """Read a task's examples grouped by split from any format `read_records` knows, as its `data`
    section says (`task.data`; errors name settings under `key`):

    `fields` maps ragft's names (id, input, reference, split, and optionally category, gold_passages,
    facts) to the file's field names; a null optional name means the file has no such field.
    `splits` maps ragft's split names to the file's split values (`test: [test1, test2]`); without it a
    split is named by its value. `split_by` makes a seeded split where the file has no split field.
    `list_separator` splits a string of gold passage ids. `breakdowns` maps the name of each further
    grouping the report breaks its headline down by (e.g. `knowledge`) to the file's field; every
    example must have it. `encoding`: a text file's encoding. `template_fields`: further fields of the
    record the prompt template names (`{patient_age}`), which every example must have.
    """
    splits, _ = _read_examples(data, key, template_fields)
    return splits


def _read_examples(
    data: Mapping[str, Any], key: str, template_fields: Sequence[str] = ()
) -> tuple[dict[str, list[Example]], dict[str, str]]:
    """`load_examples`, and where each example is in the file (id -> line or row), in the file's order."""
    path, fields = Path(data["path"]), data["fields"]
    split_by = data.get("split_by")
    required = _required_fields(fields, split_by, key)
    separator = data.get("list_separator")
    rows: list[tuple[str, Example]] = []
    first_seen: dict[str, str] = {}
    split_field = required.get("split", "split")
    for line, record in read_records(path, f"{key}.data.path", split_field, data.get("encoding", "utf-8")):
        split = "" if split_by else str(_field(record, split_field, path, line, (str, int)))
        category, gold, facts = (fields.get(name) for name in ("category", "gold_passages", "facts"))
        example = Example(
            id=str(_field(record, required["id"], path, line, (str, int))),
            input=_field(record, required["input"], path, line, str),
            reference=str(_field(record, required["reference"], path, line, (str, int, float))),
            # a flag or a number names a group too
            category=str(_field(record, category, path, line, (str, bool, int))) if category else "",
            gold_passages=_id_list(record, gold, path, line, separator) if gold else (),
            facts={str(k): str(v) for k, v in _field(record, facts, path, line, dict).items()} if facts else {},
            breakdowns={
                name: str(_field(record, column, path, line, (str, bool, int)))
                for name, column in (data.get("breakdowns") or {}).items()
            },
            fields={name: _template_field(record, name, path, line, key) for name in template_fields},
        )
        if example.id in first_seen:
            raise DataError(
                path, f"duplicate id '{example.id}' (first at {first_seen[example.id]})", line, field=required["id"]
            )
        first_seen[example.id] = line
        rows.append((split, example))
    if not first_seen:
        raise empty_error(path, "examples")
    return assign_splits(rows, data.get("splits"), split_by, path.name, key), first_seen


def _required_fields(fields: Mapping[str, str | None], split_by: Any, key: str) -> dict[str, str]:
    """The file's field for each of `REQUIRED_FIELDS` (split only where no `split_by` makes the splits);
    a ConfigError where one is not mapped, or where a split field and `split_by` are both given."""
    needed = [name for name in REQUIRED_FIELDS if not (split_by and name == "split")]
    if split_by and fields.get("split"):
        raise ConfigError(
            f"{key}.data.split_by",
            f"makes the splits, but {key}.data.fields.split also reads them from the field '{fields['split']}'.",
            f"Set {key}.data.fields.split=null to split the examples by seed, or remove split_by.",
        )
    missing = [name for name in needed if not fields.get(name)]
    if missing:
        fix = "Map each of id, input and reference to a field of the data file"
        raise ConfigError(
            f"{key}.data.fields",
            f"no mapping for {missing}.",
            fix
            + (
                f", and split to the field naming each example's split (or set {key}.data.split_by)."
                if not split_by
                else "."
            ),
        )
    return {name: str(fields[name]) for name in needed}


def load_corpus(
    path: str | Path,
    id_field: str = "id",
    text_field: str = "text",
    config_key: str = "task.corpus.path",
    encoding: str = "utf-8",
    document_field: str | None = None,
) -> list[Passage]:
    """The corpus's passages, in the file's order; an id used twice is a DataError naming both places.
    A passage is a document of its own, or, with `document_field`, part of the document that field names
    (PubMedQA: an abstract's sections, each a passage of the article `pmid`): gold ids then name those
    documents, and retrieval is judged by them."""
    path = Path(path)
    passages: list[Passage] = []
    first_seen: dict[str, str] = {}
    for line, record in read_records(path, config_key, encoding=encoding):
        document = str(_field(record, document_field, path, line, (str, int))) if document_field else ""
        passage = Passage(
            id=str(_field(record, id_field, path, line, (str, int))),
            text=_field(record, text_field, path, line, str),
            source=document,
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
    template_fields: Sequence[str] = (),
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
    splits, places = _read_examples(data, key, template_fields)
    everything = dict(splits)  # the gold check reads every example, whatever the categories and limits keep
    if data.get("categories"):
        splits = _only_categories(splits, data["categories"], data["path"], key)
    for split in required:
        if not splits.get(split):
            found = ", ".join(f"'{name}'" for name in sorted(splits) if splits[name]) or "none"
            fix = (
                ""
                if data.get("splits") or data.get("split_by")
                else f"; map the file's to ragft's with {key}.data.splits"
            )
            raise DataError(
                data["path"],
                f"no examples in split '{split}' (found splits: {found}){fix}",
                field=data["fields"].get("split"),
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
    passages = load_corpus(
        corpus_path, id_field, text_field, f"{key}.corpus.path", encoding, corpus.get("document_field")
    )
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
    corpus file does not have; it counts the others and says to set `list_separator` where the id is
    several joined, or, when no gold id at all matches, to check the corpus's id field."""
    documents = {p.doc_id for p in passages}
    by_id = {e.id: e for examples in splits.values() for e in examples}
    unknown = {  # in the file's order; an example no split keeps (task.data.splits) is not checked
        example_id: [d for d in by_id[example_id].gold_passages if d not in documents]
        for example_id in places
        if example_id in by_id
    }
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
    joined = next(
        (sep for sep in ";,|" if all(part.strip() in documents for part in unknown[first][0].split(sep))), None
    )
    if joined and joined in unknown[first][0]:
        problem += f"; if it lists several ids, set {key}.data.list_separator='{joined}'"
    elif not any(d in documents for e in by_id.values() for d in e.gold_passages):
        problem += f"; no example's gold passage is in it: check {key}.corpus.path and {key}.corpus.id_field"
    raise DataError(path, problem, f"{places[first]} (example '{first}')", field)


def task_from_config(spec: Mapping[str, Any], required: Sequence[str] = REQUIRED_SPLITS) -> TaskData:
    """`load_task` for a task config node (`task`, an adapter's `train_task`, a training stage, ...);
    errors name the node's own keys (`evaluate_also.general_qa.data.encoding`)."""
    key = str(spec._get_full_key(None)) if isinstance(spec, DictConfig) else ""
    named = template_fields(spec.get("template") or {})
    return load_task(spec["name"], spec["data"], spec.get("corpus"), spec.get("limits"), required, key or "task", named)


def template_fields(template: Mapping[str, Any]) -> list[str]:
    """The record fields a task's `input_format` names besides `{input}` (`{question}`, `{patient_age}`)."""
    text = str(template.get("input_format") or "")
    named = (name for _, name, _, _ in string.Formatter().parse(text) if name)
    return list(dict.fromkeys(name for name in named if name != "input"))


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
    """The corpus without the documents `ids` (`task.corpus.exclude`: a withdrawn protocol), named by
    passage id or, where passages are parts of documents (`document_field`), by document."""
    withdrawn = set(ids)
    unknown = sorted(withdrawn - {p.id for p in passages} - {p.doc_id for p in passages})
    if unknown:
        raise ConfigError(config_key, f"names documents the corpus does not have: {unknown}.")
    return [p for p in passages if p.id not in withdrawn and p.doc_id not in withdrawn]
