"""Shared fixtures and helpers: offline mode, a throw-away artefact cache, composed configs, the shipped
corpus, an experiment's jobs run in-process or as the user's command, and run records read back."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from ragft.cli import keep_runtime_choices  # noqa: E402
from ragft.errors import RagftError  # noqa: E402
from ragft.record.cache import CACHE_ENV, cache_root  # noqa: E402
from ragft.record.run import RunRecord, read_record, read_records  # noqa: E402
from ragft.types import Example, Prediction  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
CLINIC = ROOT / "corpora" / "clinic"
OmegaConf.register_new_resolver("ragft_root", lambda: str(ROOT), replace=True)


@pytest.fixture(scope="session", autouse=True)
def artefact_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Adapters, embeddings and indexes go to a per-session folder; converted models (content-keyed,
    identical for everyone) are shared with the user's cache so the GGUF is dequantised once per machine."""
    shared_models = cache_root() / "models"
    shared_models.mkdir(parents=True, exist_ok=True)
    root = tmp_path_factory.mktemp("ragft-cache")
    (root / "models").symlink_to(shared_models, target_is_directory=True)
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(root)
    yield root
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


# --- configs ------------------------------------------------------------------------------------------


def compose_config(*overrides: str, results: Path | None = None, with_hydra: bool = False) -> DictConfig:
    """The config `python -m ragft.run <overrides>` would run, composed in this process. It keeps
    Hydra's runtime choices (`hydra.runtime.choices`: which file of each group was composed), which a
    run's identity is named from; `with_hydra` keeps all of Hydra's own settings (its sweep, ...)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    if not with_hydra:
        cfg = keep_runtime_choices(cfg)
    if results is not None:
        with open_dict(cfg):
            cfg.paths.results = str(results)
    return cfg


@pytest.fixture
def smoke_cfg(tmp_path: Path):
    """A factory of smoke-sized configs (tiny models, few examples) writing into tmp_path/results."""

    def make(*overrides: str) -> DictConfig:
        return compose_config("+debug=smoke", "exp_name=test", *overrides, results=tmp_path / "results")

    return make


def adaptations() -> list[str]:
    """Every adaptation preset of the generator (`adaptation=<name>`), found in conf/adaptation/; a floor
    served instead of the model (`answer:`, adaptation=majority) is not one, nor is a preference stage
    over a method (`preference:`, adaptation=dpo, orpo: tests/test_preference.py)."""
    presets = sorted((CONF / "adaptation").glob("*.yaml"))
    return [p.stem for p in presets if not {"answer", "preference"} & set(OmegaConf.load(p))]


def preference_adaptations() -> list[str]:
    """The adaptation presets with a preference stage (adaptation=dpo, orpo)."""
    return sorted(p.stem for p in (CONF / "adaptation").glob("*.yaml") if "preference" in OmegaConf.load(p))


def trained_adaptations() -> list[str]:
    """The adaptation presets that train something (their `adaptation.method` is set)."""
    return [name for name in adaptations() if compose_config(f"adaptation={name}").adaptation.method is not None]


def experiments() -> list[str]:
    """Every experiment a user can run (`+exp=<name>`), found in conf/exp/."""
    return sorted(p.stem for p in (CONF / "exp").glob("*.yaml"))


# Tasks whose data is not shipped, and where the tests find it (beside the clone, as CI has it).
EXTERNAL_DATA = {name: ROOT.parent / "shared" / "data" / name for name in ("pubmedqa", "mts_dialog")}


def external_data(task: str) -> list[str]:
    """`task.dir=<folder>` for a task whose data is not shipped (the test is skipped, saying so, where the
    folder is absent); nothing for a shipped task."""
    if task not in EXTERNAL_DATA:
        return []
    if not EXTERNAL_DATA[task].is_dir():
        pytest.skip(f"{task} data not found at {EXTERNAL_DATA[task]}")
    return [f"task.dir={EXTERNAL_DATA[task]}"]


def sweep_jobs(exp: str, *overrides: str) -> list[list[str]]:
    """Each job's overrides in `python -m ragft.run -m +exp=<exp> <overrides>`: the experiment's
    `hydra.sweeper.params` crossed, a key given on the command line replacing the experiment's own
    sweep of it (as Hydra's basic sweeper does)."""
    parser = OverridesParser.create()
    command = parser.parse_overrides([f"+exp={exp}", *overrides])
    fixed = [o.input_line for o in command if not o.is_sweep_override()]  # what composes without -m
    params = compose_config(*fixed, with_hydra=True).hydra.sweeper.params or {}
    axes: dict[str, list[str]] = {}
    for override in [*parser.parse_overrides([f"{k}={v}" for k, v in params.items()]), *command]:
        key = override.get_key_element()
        if override.is_sweep_override():
            axes[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            axes[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*axes.values())]


# --- the shipped corpus ---------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class Clinic:
    """The shipped clinic corpus, as committed (tests compute their expectations from it)."""

    notes: list[dict]
    clinic_qa: list[dict]
    general_qa: list[dict]
    protocols: dict[int, dict[str, str]]  # version -> passage id -> text

    def split(self, records: list[dict], name: str) -> list[dict]:
        return [r for r in records if r["split"] == name]


@pytest.fixture(scope="session")
def clinic() -> Clinic:
    versions = {int(p.stem.rsplit("_v", 1)[1]): p for p in CLINIC.glob("protocols_v*.jsonl")}
    return Clinic(
        notes=read_jsonl(CLINIC / "notes.jsonl"),
        clinic_qa=read_jsonl(CLINIC / "clinic_qa.jsonl"),
        general_qa=read_jsonl(CLINIC / "general_qa.jsonl"),
        protocols={v: {p["id"]: p["text"] for p in read_jsonl(path)} for v, path in sorted(versions.items())},
    )


def prediction(
    output: str,
    reference: str = "",
    *,
    facts: dict[str, str] | None = None,
    gold: tuple[str, ...] = (),
    retrieved: tuple[str, ...] | list[str] | None = None,
    passages: tuple[str, ...] | list[str] = (),
    note: str = "",
) -> Prediction:
    """One answer to score: `note` is the example's input; `retrieved=None` is an arm that does not
    retrieve, a sequence the documents its prompt carries (and the retriever's ranking)."""
    example = Example(id="x", input=note, reference=reference, facts=facts or {}, gold_passages=tuple(gold))
    ranking = None if retrieved is None else tuple(retrieved)
    return Prediction(example, "", output, retrieved=tuple(retrieved or ()), ranking=ranking, passages=tuple(passages))


# --- runs and their records ------------------------------------------------------------------------------


def run_in_process(exp: str, results: Path, *overrides: str) -> Path:
    """Every job of `python -m ragft.run -m +exp=<exp> +debug=smoke <overrides>`, run one after another in
    this process as Hydra's basic launcher runs them, then the report its callback writes; returns the
    experiment's folder. A job's error is raised (the command would log it and go on)."""
    from ragft.recipe import run_experiment_arm
    from ragft.report.render import write_report

    exp_dir = None
    for job in sweep_jobs(exp, "+debug=smoke", *overrides):
        cfg = compose_config(*job, results=results)
        run_experiment_arm(cfg)
        exp_dir = results / cfg.exp_name
    assert exp_dir is not None, f"experiment {exp} has no job"
    write_report(exp_dir)
    return exp_dir


# Tests read records only through these helpers, so a change of the record's files or API is one edit here.
def records(exp_dir: Path) -> list[RunRecord]:
    """Every run record of an experiment, finished or failed."""
    return read_records(exp_dir)


def record_of(run_dir: Path) -> RunRecord:
    """The run record in one run folder."""
    return read_record(run_dir)


def by_arm(exp_dir: Path) -> dict[str, RunRecord]:
    """arm label -> run record, for experiments with one run per label."""
    found = records(exp_dir)
    labelled = {r.identity.arm: r for r in found}
    assert len(labelled) == len(found), f"several runs share a label in {exp_dir}: {[r.identity.arm for r in found]}"
    return labelled


@pytest.fixture
def toy_experiment(tmp_path: Path) -> Path:
    """An experiment folder of three finished runs written directly (tests/fake_runs.py), no model."""
    from tests.fake_runs import write_experiment

    return write_experiment(tmp_path)


def ragft_command(*args: str, expect: int | None = 0, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m <args>` as a user types it; fails the test unless it exits with `expect` (None: any
    failure)."""
    result = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=1800,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )
    expected = result.returncode != 0 if expect is None else result.returncode == expect
    assert expected, f"exit {result.returncode}, not {expect}:\n{result.stderr[-3000:]}"
    return result


# --- errors before any work ----------------------------------------------------------------------------


def assert_nothing_written(results: Path) -> None:
    written = [p for p in results.rglob("*") if p.is_file()] if results.exists() else []
    assert written == [], written


def run_expecting(error: type[RagftError], pattern: str, cfg: DictConfig, tmp_path: Path) -> None:
    """The run fails with `error` matching `pattern` and leaves nothing in tmp_path/results."""
    from ragft.recipe import run_experiment_arm

    with pytest.raises(error, match=pattern):
        run_experiment_arm(cfg)
    assert_nothing_written(tmp_path / "results")


# --- the command, in process: bad input and faults -------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What `python -m ragft.run +debug=smoke exp_name=test paths.results=<results> <overrides>` did."""

    code: int  # the exit status
    stderr: str  # what it printed on stderr
    results: Path

    @property
    def error(self) -> str:
        """The one error line ragft printed (without its `ragft: error: ` prefix); "" if none."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("ragft: error: ")]
        assert len(lines) <= 1, self.stderr
        return lines[0].removeprefix("ragft: error: ") if lines else ""

    def files(self) -> list[Path]:
        """Every file under the results folder, Hydra's own log folder aside."""
        found = self.results.rglob("*") if self.results.exists() else []
        return sorted(p for p in found if p.is_file() and ".hydra" not in p.parts)


def attempt(results: Path, *overrides: str) -> Attempt:
    """Run the command's steps in this process as the command runs them: the command line's keys checked
    before Hydra composes, the job (a RagftError printed as one line, exit status 2), then the report the
    job's callback writes. Anything else raised (a traceback) fails the test."""
    import contextlib
    import io

    from ragft.cli import check_command_line, run_job
    from ragft.recipe import run_experiment_arm
    from ragft.report.render import write_report

    argv = ["+debug=smoke", "exp_name=test", *overrides]
    stderr, code = io.StringIO(), 0
    with contextlib.redirect_stderr(stderr):
        try:
            check_command_line([*argv, f"paths.results={results}"])
            cfg = compose_config(*argv, results=results)
            try:
                run_job(run_experiment_arm, cfg)
            finally:
                exp_dir = results / str(cfg.exp_name)
                if exp_dir.is_dir():
                    write_report(exp_dir)
        except SystemExit as exit:
            code = int(exit.code or 0)
    return Attempt(code, stderr.getvalue(), results)


def assert_refused(result: Attempt, message: str) -> None:
    """Exit status 2, one error line holding `message`, and not a file written."""
    assert (result.code, result.error.count("\n")) == (2, 0), result.stderr
    assert message in result.error, result.error
    assert result.files() == []
