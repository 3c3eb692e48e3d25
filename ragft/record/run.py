"""The run record: what one run was, what it scored and what it cost, typed, with a schema version.

This module alone writes and reads a run's folder: `record.json` (the `RunRecord`), `predictions.jsonl`
(one row per test example), `config.yaml` (the resolved config, for a person re-running it) and
`run.log`. A folder is written in a hidden staging folder and moved into place in one rename, so a
reader sees a whole record or none. A run that failed is recorded too (status `failed`, the stage and
the error) and is run again by the next identical job.

A run of `ragft.run` works in a resumable staging folder (`ResumableRunWriter`): its training
checkpoints and its answers, batch by batch, stay there when the process is interrupted or killed, and
the same command resumes from them; a lock beside it lets one process at a time work on one run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock

from ragft.errors import ConfigError, one_line
from ragft.record.cache import drop, publish, staging_dir
from ragft.record.cost import Cost
from ragft.types import Prediction

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
RECORD_FILE = "record.json"
PREDICTIONS_FILE = "predictions.jsonl"
Status = Literal["finished", "failed"]
UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError)  # a damaged or foreign record


@dataclass(frozen=True)
class Summary:
    """A score's mean over the test examples with its 95% bootstrap interval."""

    mean: float
    ci_low: float
    ci_high: float
    n: int
    higher_is_better: bool = True
    group: str = "quality"  # "retrieval": judges the retriever, not the answer
    seed_sd: float | None = None  # several seeds: the standard deviation of their means


Scores = dict[str, Summary]


@dataclass
class TaskScore:
    """A generator's primary score on a task's test set: another test set (`evaluate_also`) or a stage's."""

    task: str
    metric: str
    summary: Summary
    per_example: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskScore:
        return cls(data["task"], data["metric"], Summary(**data["summary"]), dict(data.get("per_example", {})))


@dataclass
class StageScores:
    """Sequential fine-tuning: after a stage (None: before any training), the scores on the test sets
    of it and every earlier stage."""

    stage: str | None
    train_s: float
    scores: dict[str, TaskScore] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageScores:
        scores = {name: TaskScore.from_dict(s) for name, s in data.get("scores", {}).items()}
        return cls(data["stage"], data["train_s"], scores)


@dataclass(frozen=True)
class RunIdentity:
    """What a run is: its experiment, label, content key and the choices that made it."""

    exp: str
    arm: str
    key: str  # hash of everything that can change the results
    group_key: str  # the key without the seed: runs that differ only in their seed share it
    task: str
    primary_metric: str
    generator: str
    adaptation: str
    context: str
    retriever: str | None
    seed: int
    embedder: str | None = None  # the embedder the run's retriever uses (None: the run embeds nothing)
    settings: dict[str, Any] = field(default_factory=dict)  # the result-relevant config, flattened

    @property
    def run_id(self) -> str:
        return f"{self.arm}-{self.key}"


@dataclass(frozen=True)
class RunFailure:
    stage: str
    error: str  # exception type
    message: str


@dataclass
class RunRecord:
    identity: RunIdentity
    status: Status
    provenance: dict[str, Any]
    scores: Scores = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    leakage: dict[str, Any] = field(default_factory=dict)
    other_tests: dict[str, TaskScore] = field(default_factory=dict)
    stages: list[StageScores] = field(default_factory=list)
    failure: RunFailure | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        if not isinstance(data, dict):
            raise ValueError(f"a record is a JSON object, not {type(data).__name__}")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"record schema {data.get('schema_version')}, this ragft reads {SCHEMA_VERSION}")
        return cls(
            identity=RunIdentity(**data["identity"]),
            status=data["status"],
            provenance=dict(data["provenance"]),
            scores={name: Summary(**s) for name, s in data["scores"].items()},
            cost=Cost.from_dict(data["cost"]),
            leakage=dict(data["leakage"]),
            other_tests={name: TaskScore.from_dict(s) for name, s in data["other_tests"].items()},
            stages=[StageScores.from_dict(s) for s in data["stages"]],
            failure=RunFailure(**data["failure"]) if data.get("failure") else None,
        )

    def table_row(self) -> dict[str, Any]:
        """One flat row of the experiment table: identity, status, each score's mean and interval, each
        cost figure (`cost_*`), leak rates and the scores on other test sets."""
        ident = self.identity
        row: dict[str, Any] = {k: v for k, v in asdict(ident).items() if k != "settings"}
        row.update(run_id=ident.run_id, status=self.status)
        row.update({k: v for k, v in self.provenance.items() if not isinstance(v, (dict, list))})
        if self.failure:
            row.update(failed_stage=self.failure.stage, error=f"{self.failure.error}: {self.failure.message}")
        for name, summary in self.scores.items():
            row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = summary.mean, summary.ci_low, summary.ci_high
        if self.status == "finished":
            row.update({f"cost_{k}": v for k, v in self.cost.flat().items()})
        row.update({f"leak_{check}_rate": summary["rate"] for check, summary in self.leakage.items()})
        row.update({f"also_{name}_{s.metric}": s.summary.mean for name, s in self.other_tests.items()})
        return row


class RunWriter:
    """Collects a run's files in a hidden staging folder; `commit` moves it into place in one rename
    (replacing a failed record of the same run)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        self.staging = staging_dir(run_dir)

    def write_text(self, name: str, text: str) -> None:
        (self.staging / name).write_text(text, encoding="utf-8")

    def write_predictions(self, predictions: Iterable[Prediction]) -> None:
        with (self.staging / PREDICTIONS_FILE).open("w", encoding="utf-8") as handle:
            for prediction in predictions:
                handle.write(json.dumps(prediction.record(), ensure_ascii=False) + "\n")

    def commit(self, record: RunRecord) -> None:
        text = json.dumps(record.to_dict(), indent=2, default=str, allow_nan=True) + "\n"
        (self.staging / RECORD_FILE).write_text(text, encoding="utf-8")
        if self.run_dir.exists():  # a failed (or hand-made) record; a finished one is never rewritten
            shutil.rmtree(self.run_dir)
        publish(self.staging, self.run_dir)

    def abort(self) -> None:
        drop(self.staging)


CONFIG_FILE = "config.yaml"
CHECKPOINTS, ANSWERS = "checkpoints", "answers"  # a run's work kept for resuming, removed when it is recorded


def work_folder(run_dir: Path) -> Path:
    """Where a run of `ragft.run` works: a hidden sibling of its folder, the same for every process and
    every attempt at the run."""
    return run_dir.with_name(f".{run_dir.name}.partial")


@dataclass(frozen=True)
class RunWork:
    """What a run keeps in its work folder for a later attempt: training checkpoints, answered batches."""

    folder: Path

    @property
    def checkpoints(self) -> Path:
        return self.folder / CHECKPOINTS

    @property
    def answers(self) -> Path:
        return self.folder / ANSWERS


def run_lock(run_dir: Path) -> FileLock:
    """Held while a process works on the run: an identical job in another process waits, then finds the
    run finished. The kernel releases it when its process dies, however it dies."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(run_dir.with_name(f".{run_dir.name}.lock")))


class ResumableRunWriter(RunWriter):
    """A `RunWriter` whose staging folder is the run's work folder, kept when the run is interrupted:
    the next attempt with the same resolved config (`config_text`) resumes from what it holds (training
    checkpoints, answered batches); one with another config starts it afresh. Hold `run_lock` around it."""

    def __init__(self, run_dir: Path, config_text: str) -> None:
        self.run_dir = run_dir
        self.staging = work_folder(run_dir)
        config = self.staging / CONFIG_FILE
        self.resumed = config.is_file() and config.read_text(encoding="utf-8") == config_text
        if self.staging.exists() and not self.resumed:
            log.info("%s: an earlier attempt with other settings left work here; starting afresh", self.staging)
            shutil.rmtree(self.staging)
        elif self.resumed:
            log.info("resuming the interrupted run from %s", self.staging)
        self.staging.mkdir(parents=True, exist_ok=True)
        self.write_text(CONFIG_FILE, config_text)

    @property
    def work(self) -> RunWork:
        return RunWork(self.staging)

    def commit(self, record: RunRecord) -> None:
        for scratch in (self.work.checkpoints, self.work.answers):
            shutil.rmtree(scratch, ignore_errors=True)
        super().commit(record)

    def abort(self) -> None:
        """Interrupted: the work stays for the next attempt."""


def check_writable(folder: Path, config_key: str) -> None:
    """A ConfigError naming `config_key` unless `folder` can be created and written: checked before any
    work, so a run never does its work only to fail writing its record."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(config_key, f"'{folder}' cannot be a folder: '{existing}' is a file.", "Point it elsewhere.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            config_key, f"'{existing}' is not writable, so '{folder}' cannot hold results.", "Point it elsewhere."
        )


def replace_files(writers: Mapping[Path, Callable[[Path], object]]) -> list[Path]:
    """Write each file through its writer on a hidden temporary sibling, then move them all into place:
    a reader sees the old files or the new ones, never half of one, and an error while writing (a full
    disk) leaves every earlier file as it was and no temporary file behind."""
    staged: dict[Path, Path] = {}
    try:
        for path, write in writers.items():
            staged[path] = tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            write(tmp)
        for path, tmp in staged.items():
            os.replace(tmp, path)
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    return list(writers)


def read_record(run_dir: Path) -> RunRecord:
    return RunRecord.from_dict(json.loads((run_dir / RECORD_FILE).read_text(encoding="utf-8")))


def read_predictions(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / PREDICTIONS_FILE
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def status(run_dir: Path) -> Status | None:
    """The recorded status of the run in `run_dir`, or None where there is no readable record."""
    try:
        return read_record(run_dir).status
    except UNREADABLE:
        return None


def is_finished(run_dir: Path) -> bool:
    return status(run_dir) == "finished"


def run_dirs(exp_dir: Path) -> Iterator[Path]:
    """Every run folder of an experiment that holds a record (finished or failed), by name."""
    if exp_dir.is_dir():
        yield from sorted(
            p for p in exp_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / RECORD_FILE).is_file()
        )


def read_records(exp_dir: Path) -> list[RunRecord]:
    """Every readable record of an experiment; one that cannot be read is skipped with a warning that
    names its file (it never stops the table or the report)."""
    return [record for _, record in read_runs(exp_dir)]


def read_runs(exp_dir: Path) -> list[tuple[Path, RunRecord]]:
    """`read_records` with the folder each record is in (a run scored by `python -m ragft.score` is in a
    folder its user named, not in one named by its run id)."""
    runs = []
    for run_dir in run_dirs(exp_dir):
        try:
            runs.append((run_dir, read_record(run_dir)))
        except UNREADABLE as err:
            warn_unreadable(run_dir / RECORD_FILE, err)
    return runs


_warned: set[Path] = set()


def warn_unreadable(path: Path, err: BaseException, fix: str = "re-run its arm to replace it") -> None:
    """One warning per damaged file and process (the table and the report each read every record)."""
    if path not in _warned:
        _warned.add(path)
        log.warning("skipping %s: unreadable (%s); %s", path, one_line(err), fix)
