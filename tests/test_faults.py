"""The bad-input battery, faults half: an interrupted, killed, concurrent or damaged run never leaves a
half-written record, table or report, and never poisons the experiment for the runs after it.

Signals need a real process (`python -m ragft.run`, marked integration); damaged files and honest
records are checked in this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, Attempt, attempt, records

LONG_TRAINING = ("arm=lora", "training.max_steps=400")  # far longer than it takes to be interrupted
LONG_GENERATION = (
    "arm=zero_shot",
    "task.limits.test=null",
    "generation.batch_size=1",
    "task.generation.max_new_tokens=48",
)


def hidden_folders(results: Path) -> list[Path]:
    """Staging folders (hidden) anywhere under the results, Hydra's log folder aside."""
    return [p for p in results.rglob(".*") if p.is_dir() and p.name != ".hydra" and ".hydra" not in p.parts]


def run_files(results: Path) -> list[Path]:
    """What runs published: run folders' files, tables and reports (hidden staging and lock files aside)."""
    found = results.rglob("*") if results.exists() else []
    return sorted(
        p for p in found if p.is_file() and not any(part.startswith(".") for part in p.relative_to(results).parts)
    )


def _default_sigint() -> None:
    """In the child before it starts: Ctrl-C's default action, whatever the test runner's was (a shell
    starts background jobs with SIGINT ignored, and an ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Command:
    """`python -m ragft.run +debug=smoke exp_name=test paths.results=<results> <overrides>`, its stderr
    collected as it comes, so a test can signal it at a chosen point of its work."""

    def __init__(self, results: Path, *overrides: str) -> None:
        args = [sys.executable, "-m", "ragft.run", "+debug=smoke", "exp_name=test", f"paths.results={results}"]
        env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [*args, *overrides], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in iter(lambda: self.process.stderr.readline(), ""):  # type: ignore[union-attr]
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, marker: str, timeout: float = 300) -> None:
        """Block until `marker` appears on stderr (tqdm redraws with \\r, so search the whole text)."""
        deadline = time.monotonic() + timeout
        while marker not in self.stderr:
            assert self.process.poll() is None, f"exited {self.process.returncode} first:\n{self.stderr[-3000:]}"
            assert time.monotonic() < deadline, f"no {marker!r} after {timeout} s:\n{self.stderr[-3000:]}"
            time.sleep(0.2)

    def finish(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code


@pytest.mark.integration
@pytest.mark.parametrize(
    ("overrides", "marker"),
    [(LONG_TRAINING, "/400 ["), (LONG_GENERATION, "generating 60 answers")],
    ids=["during-training", "during-generation"],
)
def test_ctrl_c_is_one_line_exit_130_and_leaves_nothing_half_written(overrides, marker, tmp_path):
    command = Command(tmp_path, *overrides)
    command.wait_for(marker)
    time.sleep(1.0)
    command.process.send_signal(signal.SIGINT)
    assert command.finish() == 130, command.stderr[-3000:]
    assert "Traceback" not in command.stderr
    said = [line for line in command.stderr.replace("\r", "\n").splitlines() if line.startswith("ragft: ")]
    assert len(said) == 1 and said[0].startswith("ragft: interrupted;"), command.stderr[-2000:]
    assert (run_files(tmp_path), hidden_folders(tmp_path)) == ([], [])


@pytest.mark.integration
def test_sigterm_ends_a_run_as_ctrl_c_does_with_exit_143(tmp_path):
    command = Command(tmp_path, *LONG_TRAINING)
    command.wait_for("/400 [")
    time.sleep(1.0)
    command.process.terminate()
    assert command.finish() == 143, command.stderr[-3000:]
    assert "Traceback" not in command.stderr
    said = [line for line in command.stderr.replace("\r", "\n").splitlines() if line.startswith("ragft: ")]
    assert len(said) == 1 and said[0].startswith("ragft: terminated;"), command.stderr[-2000:]
    assert (run_files(tmp_path), hidden_folders(tmp_path)) == ([], [])


@pytest.mark.integration
@pytest.mark.parametrize(
    ("overrides", "marker"),
    [(LONG_TRAINING, "/400 ["), (LONG_GENERATION, "generating 60 answers")],
    ids=["in-training", "in-generation"],
)
def test_a_killed_run_leaves_a_staging_folder_the_next_run_removes(overrides, marker, tmp_path):
    """Any next run of the experiment removes it (here a short one, not the killed run's own config)."""
    command = Command(tmp_path, *overrides)
    command.wait_for(marker)
    command.process.kill()
    command.finish()
    left = hidden_folders(tmp_path / "test")
    assert left, "a killed run left no staging folder: the test no longer kills it in its work"
    assert run_files(tmp_path) == []

    again = Command(tmp_path, "arm=zero_shot")
    assert again.finish() == 0, again.stderr[-3000:]
    assert [p for p in left if p.exists()] == []
    (record,) = records(tmp_path / "test")
    assert record.status == "finished"
    assert len(pd.read_csv(tmp_path / "test" / "runs.csv")) == 1


@pytest.mark.integration
def test_concurrent_arms_write_one_consistent_table_and_report(tmp_path):
    arms = ["zero_shot", "few_shot", "rag"]
    commands = [Command(tmp_path, f"arm={arm}") for arm in arms]
    assert [c.finish() for c in commands] == [0, 0, 0], [c.stderr[-2000:] for c in commands]
    table = pd.read_csv(tmp_path / "test" / "runs.csv")
    assert sorted(table["arm"]) == sorted(arms)
    assert set(table["status"]) == {"finished"}
    report = (tmp_path / "test" / "report.md").read_text(encoding="utf-8")
    assert all(f"| {arm} " in report for arm in arms)
    assert hidden_folders(tmp_path) == []


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the file case below runs")
def test_a_read_only_results_folder_is_one_line_before_any_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        command = Command(locked, "arm=zero_shot")
        assert command.finish() == 2
        assert "ragft: error: config `paths.results`:" in command.stderr
        assert "is not writable" in command.stderr and "Traceback" not in command.stderr
    finally:
        locked.chmod(0o755)


def test_results_under_a_file_is_one_line_before_any_work(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    result = attempt(tmp_path / "a_file" / "results")
    assert result.code == 2
    assert result.error.startswith("config `paths.results`:") and "is a file" in result.error


# --- damaged files and honest records, in this process -----------------------------------------------------


def finished(results: Path, *overrides: str) -> Attempt:
    done = attempt(results, *overrides)
    assert done.code == 0, done.stderr
    return done


def run_folder(results: Path, arm: str) -> Path:
    (folder,) = [p for p in (results / "test").iterdir() if p.is_dir() and p.name.startswith(f"{arm}-")]
    return folder


def test_an_unreadable_run_is_skipped_and_the_experiment_goes_on(tmp_path, caplog):
    """Finding 1: a truncated record no longer stops the experiment; the next arm reaches the table and
    the report, which lists the damaged folder; the same arm run again replaces it."""
    results = tmp_path / "results"
    finished(results, "arm=zero_shot")
    record = run_folder(results, "zero_shot") / "record.json"
    record.write_text(record.read_text(encoding="utf-8")[:100], encoding="utf-8")

    finished(results, "arm=few_shot")
    table = pd.read_csv(results / "test" / "runs.csv")
    assert list(table["arm"]) == ["few_shot"]
    assert "Unreadable runs" in (results / "test" / "report.md").read_text(encoding="utf-8")
    assert any(str(record) in message for message in caplog.messages)

    finished(results, "arm=zero_shot")
    assert sorted(pd.read_csv(results / "test" / "runs.csv")["arm"]) == ["few_shot", "zero_shot"]
    assert "Unreadable runs" not in (results / "test" / "report.md").read_text(encoding="utf-8")


def test_runs_of_edited_data_are_never_averaged_as_seeds(tmp_path, clinic):
    """Finding 2: the same arm on two versions of a data file is two rows of the report, each of one seed."""
    from ragft.report.render import build_report

    data = tmp_path / "clinic_qa.jsonl"
    lines = [json.dumps(r) for r in clinic.clinic_qa]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = tmp_path / "results"
    finished(results, "task=clinic_qa", f"task.data.path={data}")
    first_test = next(i for i, r in enumerate(clinic.clinic_qa) if r["split"] == "test")
    edited = dict(clinic.clinic_qa[first_test], answer=clinic.clinic_qa[first_test]["answer"] + " (edited)")
    lines[first_test] = json.dumps(edited)
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    finished(results, "task=clinic_qa", f"task.data.path={data}")

    report = build_report([results / "test"])
    assert report is not None
    assert [len(group.runs) for group in report.groups] == [1, 1]
    assert len({group.identity.group_key for group in report.groups}) == 2


def test_a_trained_arm_that_trained_zero_steps_is_an_error(tmp_path, monkeypatch, artefact_cache):
    """Finding 5: a fine-tune that did not train is a failed run, never a trained one."""
    from transformers import Trainer
    from transformers.trainer_utils import TrainOutput

    from ragft.record.cache import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # no adapter of another test is reused
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "models").symlink_to(artefact_cache / "models", target_is_directory=True)
    monkeypatch.setattr(Trainer, "train", lambda self, *a, **k: TrainOutput(0, 0.0, {}))
    result = attempt(tmp_path / "results", "arm=lora")
    assert result.code == 2
    assert result.error.startswith("config `training`: the adapter trained 0 steps on ")
    (record,) = records(tmp_path / "results" / "test")
    assert (record.status, record.failure.stage) == ("failed", "train")
