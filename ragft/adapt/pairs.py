"""Where preference pairs come from: `adaptation.preference.source` (`_target_`).

`OwnAnswers` (the default) answers the train split with the model the preference stage starts from
(the SFT model for DPO, the base for ORPO), scores each answer on the task's primary metric, and pairs
the reference (chosen) with every answer scoring below `threshold` (rejected): the model's own mistakes.
`RunAnswers` takes the answers of a finished run that answered the train split (`tune.split=train`),
and `PairsFile` a user's file of pairs. Every source gives pairs of train examples only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from ragft.data.pairs import read_pairs_file, read_run_pairs
from ragft.types import Prediction, PreferencePair, TaskData

SOURCE_KEY = "adaptation.preference.source"

# The train split answered by the starting model and scored on the primary metric (only OwnAnswers asks)
TrainAnswers = Callable[[], list[Prediction]]


class PairSource(Protocol):
    threshold: float | None  # the primary metric's score below which an answer is rejected (None: a file's pairs)

    def pairs(self, task: TaskData, metric: str, answers: TrainAnswers) -> list[PreferencePair]:
        """The pairs, each of a train example of `task`."""

    def describe(self) -> str:
        """What the pairs are, for the run's record."""


class OwnAnswers:
    """The starting model's answers on the train split that score below `threshold` on the primary
    metric, each paired as rejected with the example's reference as chosen."""

    def __init__(self, threshold: float = 1.0) -> None:
        self.threshold = threshold

    def pairs(self, task: TaskData, metric: str, answers: TrainAnswers) -> list[PreferencePair]:
        return [
            PreferencePair(p.example, p.example.reference, p.output, p.scores[metric], "own answer")
            for p in answers()
            if p.scores[metric] < self.threshold and p.output.strip() != p.example.reference.strip()
        ]

    def describe(self) -> str:
        return "own answers"


class RunAnswers:
    """A finished run's answers (it answered the train split: `tune.split=train`) scoring below `threshold`."""

    def __init__(self, run: str, threshold: float = 1.0) -> None:
        self.run, self.threshold = Path(run), threshold

    def pairs(self, task: TaskData, metric: str, answers: TrainAnswers) -> list[PreferencePair]:
        return read_run_pairs(self.run, task, metric, self.threshold, key=SOURCE_KEY)

    def describe(self) -> str:
        return f"answers of run {self.run.name}"


class PairsFile:
    """A user's file of pairs (`fields` maps id, rejected and optionally chosen to the file's fields)."""

    threshold = None

    def __init__(self, path: str, fields: Mapping[str, str | None], encoding: str = "utf-8") -> None:
        self.path, self.fields, self.encoding = Path(path), dict(fields), encoding

    def pairs(self, task: TaskData, metric: str, answers: TrainAnswers) -> list[PreferencePair]:
        return read_pairs_file(self.path, self.fields, task, key=SOURCE_KEY, encoding=self.encoding)

    def describe(self) -> str:
        return f"file {self.path.name}"
