"""tracking=mlflow: each ragft run logged as one MLflow run, here to a local SQLite store in a temporary
folder, read back with MLflow's client; runs are tiny (+debug=smoke) and in-process, and the callback
is called as Hydra calls it when a job ends."""

from __future__ import annotations

import copy
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig

import ragft.recipe
from ragft.cli import CONF
from ragft.config.command_line import check_override_keys
from ragft.config.identity import run_identity
from ragft.config.schema import validate
from ragft.errors import ConfigError
from ragft.recipe import run_experiment_arm
from ragft.record.run import read_record
from ragft.report.render import write_report
from ragft.tracking.mlflow import MLflowCallback, mlflow_key
from tests.conftest import compose_config, run_expecting


def tracked(results: Path, *overrides: str) -> DictConfig:
    """`python -m ragft.run +debug=smoke arm=zero_shot tracking=mlflow <overrides>`, results in `results`."""
    return compose_config(
        "+debug=smoke", "arm=zero_shot", "exp_name=tracked", "tracking=mlflow", *overrides, results=results
    )


def job_end(cfg: DictConfig, value: Any, status: JobStatus = JobStatus.COMPLETED) -> None:
    """What Hydra does when a job ends (the report callback first, as Hydra orders them)."""
    job = JobReturn()
    job.status, job.return_value = status, value
    write_report(Path(cfg.paths.results) / cfg.exp_name)
    MLflowCallback().on_job_end(config=cfg, job_return=job)


def mlflow_runs(cfg: DictConfig) -> tuple[Any, list[Any]]:
    """MLflow's client for the run's tracking URI, and every run of its experiment."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment_name)
    return client, client.search_runs([experiment.experiment_id]) if experiment else []


@dataclass(frozen=True)
class Logged:
    cfg: DictConfig
    run_dir: Path
    client: Any
    run: Any  # the MLflow run


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Logged:
    """One finished run, logged when its job ended."""
    pytest.importorskip("mlflow")
    cfg = tracked(tmp_path_factory.mktemp("results"))
    run_dir = run_experiment_arm(cfg)
    job_end(cfg, run_dir)
    client, runs = mlflow_runs(cfg)
    assert len(runs) == 1, runs
    return Logged(cfg, run_dir, client, runs[0])


def test_a_run_is_logged_with_its_identity_and_settings(logged):
    record, run = read_record(logged.run_dir), logged.run
    assert (run.info.run_name, run.info.status) == ("zero_shot", "FINISHED")
    tags = run.data.tags
    assert tags["ragft.run_id"] == record.identity.run_id == logged.run_dir.name
    assert (tags["ragft.status"], tags["ragft.arm"], tags["ragft.task"]) == ("finished", "zero_shot", "medical_reports")
    assert tags["ragft.git_sha"] == record.provenance["git_sha"] and "ragft.failed_stage" not in tags
    params = run.data.params
    assert set(params) == {mlflow_key(key) for key in record.identity.settings}
    assert params["task.name"] == "medical_reports" and params["task.limits.test"] == "6"
    assert all(len(value) <= 500 for value in params.values())


def test_every_score_is_logged_with_its_interval_and_every_cost_figure(logged):
    record, metrics = read_record(logged.run_dir), logged.run.data.metrics
    assert record.scores
    for name, summary in record.scores.items():
        key = mlflow_key(name)
        assert (metrics[key], metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"]) == pytest.approx(
            (summary.mean, summary.ci_low, summary.ci_high)
        )
    costs = {k: v for k, v in record.table_row().items() if k.startswith("cost_") and isinstance(v, (int, float))}
    assert costs and {k: metrics[k] for k in costs} == pytest.approx(costs)
    assert metrics["wall_s"] == pytest.approx(record.provenance["wall_s"])


def test_the_runs_files_and_the_experiments_report_are_artifacts(logged, tmp_path):
    client, run_id = logged.client, logged.run.info.run_id
    files = {f.path for f in client.list_artifacts(run_id)} | {f.path for f in client.list_artifacts(run_id, "report")}
    assert {"record.json", "config.yaml", "predictions.jsonl", "report/report.md", "report/report.html"} <= files
    report = Path(client.download_artifacts(run_id, "report/report.md", str(tmp_path)))
    assert report.read_text() == (logged.run_dir.parent / "report.md").read_text()
    assert "zero_shot" in report.read_text()


def test_a_job_that_reuses_the_run_adds_no_mlflow_run(logged):
    assert run_experiment_arm(logged.cfg) == logged.run_dir  # reused
    job_end(logged.cfg, logged.run_dir)
    job_end(logged.cfg, 0.5)  # a tuning trial's job returns its objective: the run is found from the config
    job_end(logged.cfg, None)  # a job of another command (python -m ragft.retrieve) logs nothing
    _, runs = mlflow_runs(logged.cfg)
    assert [r.info.run_id for r in runs] == [logged.run.info.run_id]
    assert runs[0].data.metrics == logged.run.data.metrics


def test_a_failed_run_is_logged_failed_and_its_rerun_updates_it(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")

    def broken(*args, **kwargs):
        raise RuntimeError("the decoder ran out of memory")

    cfg = tracked(tmp_path / "results", "exp_name=failing")
    monkeypatch.setattr(ragft.recipe, "answer", broken)
    with pytest.raises(RuntimeError) as failure:
        run_experiment_arm(cfg)
    job_end(cfg, failure.value, JobStatus.FAILED)
    _, [run] = mlflow_runs(cfg)
    assert run.info.status == "FAILED" and run.data.tags["ragft.status"] == "failed"
    assert run.data.tags["ragft.failed_stage"] == "generate"
    assert run.data.tags["ragft.error"] == "RuntimeError: the decoder ran out of memory"

    monkeypatch.undo()  # the next identical job runs it again: the same MLflow run, now finished
    run_dir = run_experiment_arm(cfg)
    job_end(cfg, run_dir)
    _, [rerun] = mlflow_runs(cfg)
    assert rerun.info.run_id == run.info.run_id and rerun.info.status == "FINISHED"
    assert rerun.data.tags["ragft.status"] == "finished" and "ragft.failed_stage" not in rerun.data.tags
    primary = read_record(run_dir).identity.primary_metric
    assert rerun.data.metrics[primary] == pytest.approx(read_record(run_dir).scores[primary].mean)


@pytest.mark.parametrize("where", ["a store under a file", "a server that is down"])
def test_a_store_that_cannot_be_written_is_a_warning_and_the_run_is_kept(where, logged, tmp_path, monkeypatch, caplog):
    if where == "a server that is down":
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        uri = "http://127.0.0.1:9"  # the discard port: nothing listens
    else:
        (tmp_path / "blocker").write_text("a file, not a folder")
        uri = f"sqlite:///{tmp_path / 'blocker' / 'mlflow.db'}"
    cfg = copy.deepcopy(logged.cfg)
    cfg.tracking.tracking_uri = uri
    with caplog.at_level(logging.WARNING, logger="ragft.tracking.mlflow"):
        job_end(cfg, logged.run_dir)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "ragft.tracking.mlflow"]
    assert f"{logged.run_dir.name} was not logged to {uri}" in warning and str(logged.run_dir) in warning
    assert read_record(logged.run_dir).status == "finished"


def test_tracking_without_mlflow_installed_stops_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    cfg = tracked(tmp_path / "results")
    run_expecting(
        ConfigError, r"^config `tracking`: .*not installed\. Install it: pip install 'ragft\[mlflow\]'", cfg, tmp_path
    )


def test_a_misspelt_tracking_key_is_refused_with_the_key_it_meant():
    with pytest.raises(ConfigError, match=r"tracking\.tracking_url.*Did you mean `tracking\.tracking_uri`"):
        check_override_keys(["tracking=mlflow", "tracking.tracking_url=http://host:5000"], CONF)
    cfg = compose_config("+debug=smoke", "tracking=mlflow", "+tracking.experiment=x")
    with pytest.raises(ConfigError, match=r"tracking\.experiment.*Did you mean `tracking\.experiment_name`"):
        validate(cfg)


def test_tracking_is_off_by_default_and_changes_no_runs_identity():
    plain, with_tracking = compose_config("+debug=smoke"), compose_config("+debug=smoke", "tracking=mlflow")
    assert "tracking" not in plain and with_tracking.tracking.experiment_name == "default"
    assert run_identity(plain, "rouge_l") == run_identity(with_tracking, "rouge_l")
    # Hydra ends a job's callbacks last to first: the report's is written before it is logged
    assert list(compose_config("tracking=mlflow", with_hydra=True).hydra.callbacks) == ["mlflow", "report"]


@pytest.mark.parametrize(
    ("name", "key"),
    [("rouge_l", "rouge_l"), ("field/age", "field/age"), ("recall@5", "recall_at_5"), ("a//b", "a__b"), ("/x", "_x")],
)
def test_names_are_made_valid_mlflow_keys(name, key):
    assert mlflow_key(name) == key
