"""Preference pairs for preference tuning (DPO, ORPO): from a user's file of pairs, or from the answers a
finished run gave. Pairs come from the train split only, so that no test example reaches training;
errors name the file, the line or row, and the field."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ragft.data.files import empty_error, read_jsonl, read_records
from ragft.data.loading import _field
from ragft.errors import ConfigError, DataError
from ragft.record.run import PREDICTIONS_FILE, RECORD_FILE, UNREADABLE, read_record
from ragft.types import Example, PreferencePair, TaskData

PAIR_FIELDS = ("id", "chosen", "rejected")  # chosen may be unmapped: the example's reference is chosen
TRAIN_FIX = "answer the train split (tune.split=train) with the run whose mistakes are wanted"


def read_pairs_file(
    path: Path,
    fields: Mapping[str, str | None],
    task: TaskData,
    key: str = "adaptation.preference.source",
    encoding: str = "utf-8",
) -> list[PreferencePair]:
    """The pairs in a file of any format `read_records` knows, in the file's order. `fields` maps ragft's
    names to the file's: `id` (a train example of `task`, whose prompt the run builds), `rejected`, and
    optionally `chosen` (null or absent: the example's reference is chosen). One id may have several
    pairs; an id outside the train split, or a pair whose two responses are the same, is a DataError."""
    path, mapped = Path(path), _pair_fields(fields, key)
    by_id = _by_id(task)
    pairs = []
    for where, record in read_records(path, f"{key}.path", encoding=encoding):
        example_id = str(_field(record, mapped["id"], path, where, (str, int)))
        example = _train_example(example_id, task, by_id, path, where, mapped["id"])
        rejected = _field(record, mapped["rejected"], path, where, str)
        chosen = _field(record, mapped["chosen"], path, where, str) if "chosen" in mapped else example.reference
        if chosen.strip() == rejected.strip():
            same = "the chosen response" if "chosen" in mapped else f"the reference of example '{example_id}'"
            raise DataError(path, f"the same text as {same}: no preference", where, field=mapped["rejected"])
        pairs.append(PreferencePair(example, chosen, rejected, origin=f"{path.name}, {where}"))
    if not pairs:
        raise empty_error(path, "preference pairs")
    return pairs


def _pair_fields(fields: Mapping[str, str | None], key: str) -> dict[str, str]:
    """The file's field for each of ragft's names mapped; a ConfigError naming `{key}.fields` where id or
    rejected is not mapped, or a name is not one of `PAIR_FIELDS`."""
    unknown = sorted(set(fields) - set(PAIR_FIELDS))
    if unknown:
        raise ConfigError(f"{key}.fields", f"unknown names {unknown}; expected some of {list(PAIR_FIELDS)}.")
    missing = [name for name in ("id", "rejected") if not fields.get(name)]
    if missing:
        raise ConfigError(
            f"{key}.fields",
            f"no mapping for {missing}.",
            "Map id and rejected to fields of the pairs file, and chosen too (null: each example's reference).",
        )
    return {name: str(column) for name, column in fields.items() if column}


def _by_id(task: TaskData) -> dict[str, tuple[str, Example]]:
    """Each example of the task with its split, by id."""
    return {example.id: (split, example) for split, examples in task.splits.items() for example in examples}


def _train_example(
    example_id: str, task: TaskData, by_id: Mapping[str, tuple[str, Example]], path: Path, where: str, field: str
) -> Example:
    """The train example `example_id`; a located DataError where the task has no such example or it is
    in another split (its answer would teach the model a test example)."""
    split, example = by_id.get(example_id, (None, None))
    if split == "train" and example is not None:
        return example
    if split is not None:
        place = f" ({task.places[example_id]})" if example_id in task.places else ""
        problem = (
            f"'{example_id}' is a {split} example{place}; pairs come from the train split only, "
            f"so that no {split} example reaches training"
        )
        raise DataError(path, problem, where, field=field)
    if example_id in task.places:
        problem = f"'{example_id}' ({task.places[example_id]}) is in none of the task's splits as loaded"
        raise DataError(path, f"{problem} (task.limits or task.data.categories leave it out)", where, field=field)
    close = difflib.get_close_matches(example_id, list(by_id), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise DataError(path, f"unknown id '{example_id}': not an example of task '{task.name}'{hint}", where, field=field)


def read_run_pairs(
    run_dir: Path, task: TaskData, metric: str, threshold: float, key: str = "adaptation.preference.source"
) -> list[PreferencePair]:
    """Pairs from a finished run's answers to train examples, in its predictions' order: each answer
    scoring below `threshold` on `metric` is rejected in favour of the example's reference (an empty
    answer is a mistake like any other; one that is the reference is no preference and is left out). An answer to an example
    outside the train split, to an id the task lacks, or without a score on `metric`, is a DataError at
    its line of predictions.jsonl."""
    run_dir = Path(run_dir)
    path = _finished_predictions(run_dir, key)
    by_id = _by_id(task)
    pairs, answered = [], 0
    for where, row in read_jsonl(path):
        answered += 1
        example_id = str(_field(row, "id", path, where, (str, int)))
        split = by_id[example_id][0] if example_id in by_id else "train"  # an unknown id: _train_example says so
        if split != "train":
            problem = f"'{example_id}' is a {split} example: the run answered the {split} split; {TRAIN_FIX}"
            raise DataError(path, f"{problem}, so that no {split} example reaches training", where, field="id")
        example = _train_example(example_id, task, by_id, path, where, "id")
        score = _score(row, metric, path, where)
        output = row.get("output")
        if not isinstance(output, str):
            raise DataError(path, f"expected str, got {type(output).__name__}", where, field="output")
        if score < threshold and output.strip() != example.reference.strip():
            pairs.append(PreferencePair(example, example.reference, output, score, f"{path.name}, {where}"))
    if not answered:
        raise empty_error(path, "answers")
    return pairs


def _finished_predictions(run_dir: Path, key: str) -> Path:
    """The predictions file of the finished run in `run_dir`; a ConfigError naming `{key}.run` where there
    is no such run."""
    fix = f"Point it at the folder of a finished run; {TRAIN_FIX}."
    if not (run_dir / RECORD_FILE).is_file():
        raise ConfigError(f"{key}.run", f"'{run_dir}' holds no run record ({RECORD_FILE}).", fix)
    try:
        record = read_record(run_dir)
    except UNREADABLE as err:
        raise ConfigError(f"{key}.run", f"the run record in '{run_dir}' cannot be read ({err}).", fix) from None
    if record.status != "finished":
        stage = f" at stage '{record.failure.stage}'" if record.failure else ""
        raise ConfigError(f"{key}.run", f"the run in '{run_dir}' {record.status}{stage}; it did not finish.", fix)
    path = run_dir / PREDICTIONS_FILE
    if not path.is_file():
        raise ConfigError(f"{key}.run", f"the run in '{run_dir}' wrote no {PREDICTIONS_FILE}.", fix)
    return path


def _score(row: Mapping[str, Any], metric: str, path: Path, where: str) -> float:
    """The row's score on `metric`; a located DataError naming the metric where it has none."""
    scores = row.get("scores")
    if not isinstance(scores, dict) or metric not in scores:
        present = ", ".join(sorted(scores)) if isinstance(scores, dict) and scores else "none"
        raise DataError(path, f"no score on metric '{metric}' (scores present: {present})", where, field="scores")
    value = scores[metric]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(path, f"score on '{metric}' is {value!r}, not a finite number", where, field="scores")
    return float(value)
