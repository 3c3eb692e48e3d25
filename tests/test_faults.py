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

from ragft.recipe import run_experiment_arm
from ragft.record.cache import CACHE_ENV
from ragft.record.run import RunRecord, read_predictions, read_record
from tests.conftest import ROOT, Attempt, attempt, compose_config, records

LONG_TRAINING = ("arm=lora", "training.max_steps=400")  # far longer than it takes to be interrupted
RESUME_AT = 4  # the checkpoint a stopped training resumes from: in its second epoch (12 examples, batch 4)
RESUMED_TRAINING = ("arm=lora", "training.max_steps=8", "training.checkpoint_steps=2")
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
    """`python -m ragft.run +debug=smoke exp_name=test paths.results=<results> <overrides>`, its output
    collected as it comes, so a test can signal it at a chosen point of its work."""

    def __init__(self, results: Path, *overrides: str) -> None:
        args = [sys.executable, "-m", "ragft.run", "+debug=smoke", "exp_name=test", f"paths.results={results}"]
        env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [*args, *overrides],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # the log (Hydra's, on stdout) and the one-line errors, in order
            text=True,
            preexec_fn=_default_sigint,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in iter(lambda: self.process.stdout.readline(), ""):  # type: ignore[union-attr]
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, marker: str, timeout: float = 300) -> None:
        """Block until `marker` appears in its output (tqdm redraws with \\r, so search the whole text)."""
        deadline = time.monotonic() + timeout
        while marker not in self.output:
            assert self.process.poll() is None, f"exited {self.process.returncode} first:\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"no {marker!r} after {timeout} s:\n{self.output[-3000:]}"
            time.sleep(0.2)

    def finish(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code


def work_folders(results: Path) -> list[Path]:
    """The work folders runs left to resume from (`.<run>.partial`)."""
    return sorted(results.rglob(".*.partial"))


def one_line_said(command: Command) -> str:
    said = [line for line in command.output.replace("\r", "\n").splitlines() if line.startswith("ragft: ")]
    assert len(said) == 1, command.output[-2000:]
    return said[0]


def reference_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *overrides: str) -> RunRecord:
    """The same run, uninterrupted, in this process, with a cache of its own (nothing reused)."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "reference-cache"))
    cfg = compose_config("+debug=smoke", "exp_name=test", *overrides, results=tmp_path / "reference")
    return read_record(run_experiment_arm(cfg))


def wait_for_file(command: Command, pattern: str, results: Path, timeout: float = 300) -> None:
    """Block until a file matching `pattern` exists under `results` (hidden folders included)."""
    deadline = time.monotonic() + timeout
    while not list(results.glob(pattern)):
        assert command.process.poll() is None, f"exited {command.process.returncode} first:\n{command.output[-3000:]}"
        assert time.monotonic() < deadline, f"no {pattern} after {timeout} s:\n{command.output[-3000:]}"
        time.sleep(0.1)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("stop", "code"),
    [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130), (signal.SIGTERM, 143)],
    ids=["sigkill", "sigint", "sigterm"],
)
def test_a_training_stopped_after_a_checkpoint_resumes_there_and_ends_as_an_uninterrupted_one(
    stop, code, tmp_path, monkeypatch
):
    """Stopped however it is stopped, a run publishes nothing and keeps its checkpoint; the same command
    resumes from it and records the training an uninterrupted run records: the same losses, step by
    step (the resumed epoch's batches in the order it drew before), the same answers and scores."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # no adapter an earlier test trained
    command = Command(tmp_path, *RESUMED_TRAINING)
    wait_for_file(command, f"test/.lora-*.partial/checkpoints/*/checkpoint-{RESUME_AT}/ragft_progress.json", tmp_path)
    command.process.send_signal(stop)
    assert command.finish() == code, command.output[-3000:]
    if stop != signal.SIGKILL:
        assert "Traceback" not in command.output
        assert one_line_said(command).endswith("not recorded (the same command resumes it)")
    assert run_files(tmp_path / "test") == [] and len(work_folders(tmp_path)) == 1

    again = Command(tmp_path, *RESUMED_TRAINING)
    assert again.finish() == 0, again.output[-3000:]
    assert work_folders(tmp_path) == []
    (resumed,) = records(tmp_path / "test")
    trained = resumed.cost.training
    assert trained is not None and trained.resumed_from_step is not None and trained.resumed_from_step >= RESUME_AT
    assert resumed.provenance["resumed"] is True
    if stop != signal.SIGKILL:  # the same resumption; compared with an uninterrupted run once
        return
    reference = reference_run(tmp_path, monkeypatch, *RESUMED_TRAINING)
    uninterrupted = reference.cost.training
    assert uninterrupted is not None and reference.provenance["resumed"] is False
    assert trained.train_steps == uninterrupted.train_steps and trained.train_tokens == uninterrupted.train_tokens
    assert trained.loss_history == pytest.approx(uninterrupted.loss_history, rel=1e-5)
    assert trained.train_loss == pytest.approx(uninterrupted.train_loss, rel=1e-5)
    assert outputs(tmp_path / "test") == outputs(tmp_path / "reference" / "test")
    assert {k: s.mean for k, s in resumed.scores.items()} == {k: s.mean for k, s in reference.scores.items()}


@pytest.mark.integration
def test_a_generation_killed_midway_resumes_at_the_first_unanswered_batch(tmp_path, monkeypatch):
    command = Command(tmp_path, *LONG_GENERATION)
    wait_for_file(command, "test/.zero_shot-*.partial/answers/batch-00005.json", tmp_path)
    command.process.kill()
    command.finish()
    kept = sorted(tmp_path.glob("test/.zero_shot-*.partial/answers/batch-*.json"))
    assert 6 <= len(kept) < 60 and run_files(tmp_path) == []

    again = Command(tmp_path, *LONG_GENERATION)
    assert again.finish() == 0, again.output[-3000:]
    (run_dir,) = [p for p in (tmp_path / "test").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert f"{len(kept)} of 60 batches were answered by an earlier attempt" in (run_dir / "run.log").read_text()
    (resumed,) = records(tmp_path / "test")
    reference = reference_run(tmp_path, monkeypatch, *LONG_GENERATION)
    assert list(outputs(tmp_path / "test").items()) == list(outputs(tmp_path / "reference" / "test").items())
    assert {k: s.mean for k, s in resumed.scores.items()} == {k: s.mean for k, s in reference.scores.items()}
    generation = resumed.cost.generation
    assert generation is not None and generation.examples == 60 and resumed.provenance["resumed"] is True


def outputs(exp_dir: Path) -> dict[str, str]:
    """Each test example's answer in the experiment's one run."""
    (run_dir,) = [p for p in exp_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return {p["id"]: p["output"] for p in read_predictions(run_dir)}


@pytest.mark.integration
def test_concurrent_arms_write_one_consistent_table_and_report(tmp_path):
    arms = ["zero_shot", "few_shot", "rag"]
    commands = [Command(tmp_path, f"arm={arm}") for arm in arms]
    assert [c.finish() for c in commands] == [0, 0, 0], [c.output[-2000:] for c in commands]
    table = pd.read_csv(tmp_path / "test" / "runs.csv")
    assert sorted(table["arm"]) == sorted(arms)
    assert set(table["status"]) == {"finished"}
    report = (tmp_path / "test" / "report.md").read_text(encoding="utf-8")
    assert all(f"| {arm} " in report for arm in arms)
    assert hidden_folders(tmp_path) == []


@pytest.mark.integration
def test_two_identical_jobs_at_once_make_one_run(tmp_path):
    """The second waits on the first's lock, then reuses its finished run."""
    commands = [Command(tmp_path, "arm=zero_shot") for _ in range(2)]
    assert [c.finish() for c in commands] == [0, 0], [c.output[-2000:] for c in commands]
    (record,) = records(tmp_path / "test")
    assert record.status == "finished" and len(pd.read_csv(tmp_path / "test" / "runs.csv")) == 1
    said = "".join(c.output for c in commands)
    assert said.count("zero_shot: wrote") == 1 and said.count("with this config exists") == 1, said[-3000:]
    assert work_folders(tmp_path) == [] and hidden_folders(tmp_path) == []


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the file case below runs")
def test_a_read_only_results_folder_is_one_line_before_any_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        command = Command(locked, "arm=zero_shot")
        assert command.finish() == 2
        assert "ragft: error: config `paths.results`:" in command.output
        assert "is not writable" in command.output and "Traceback" not in command.output
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
    assert done.code == 0, done.output
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
