"""MLflow tracking (`tracking=mlflow`): after each job, its ragft run logged as one MLflow run.

The MLflow run is named by the arm and tagged with the ragft run id (`ragft.run_id`), its status and
provenance; its parameters are the run's result-relevant settings, its metrics each score's mean and 95%
interval (`<metric>_ci_low`, `<metric>_ci_high`), the cost figures (`cost_*`), leak rates and the scores
on other test sets; its artifacts the run's files and the experiment's report (`report/`), which the
report callback has refreshed just before. A job that reuses a run already logged adds no MLflow run: it
refreshes that run's report. A run that failed and is run again updates its MLflow run.

MLflow is imported only here, when a job ends; a logging error (a server down, a store that cannot be
written) is a warning: the ragft run and its record are never touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
import re
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ragft import processes
from ragft.errors import one_line
from ragft.record.run import PREDICTIONS_FILE, RECORD_FILE, RunRecord, read_record

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)
RUN_ID_TAG = "ragft.run_id"
STARTED_TAG = "ragft.started"  # tells a new attempt at a run (a failed one run again) from a reused one
FAILURE_TAGS = ("ragft.failed_stage", "ragft.error")
RUN_FILES = (RECORD_FILE, "config.yaml", PREDICTIONS_FILE, "run.log")
REPORT_FILES = ("report.md", "report.html", "runs.csv")  # and the report's figures (*.png)
METRIC_PREFIXES = ("cost_", "leak_", "also_")  # the record's table row: cost figures, leak rates, other test sets
KEY_LIMIT = 250  # MLflow's longest parameter, metric or tag name
PARAM_VALUE_LIMIT = 500  # the longest parameter value every MLflow server accepts
TAG_VALUE_LIMIT = 5000  # and tag value
SQLITE = "sqlite:///"


class MLflowCallback(Callback):
    """Log the job's ragft run to MLflow (`config.tracking`: tracking_uri, experiment_name,
    artifact_location); a failed job's run too, where it left a record."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not processes.is_main():  # a multi-process run is logged once, by the process that records it
            return
        tracking = config.get("tracking")
        run_dir = job_run_dir(config, job_return)
        if tracking is None or run_dir is None:
            return
        try:
            mlflow_run, new = log_run(tracking, run_dir)
        except Exception as err:  # noqa: BLE001 - tracking never fails or loses a ragft run
            log.warning(
                "MLflow: %s was not logged to %s: %s: %s (its record is kept in %s)",
                run_dir.name,
                tracking.tracking_uri,
                type(err).__name__,
                one_line(err)[:500],
                run_dir,
            )
        else:
            done = "logged as run" if new else "was logged already (its report refreshed): run"
            log.info("MLflow: %s %s %s (%s)", run_dir.name, done, mlflow_run, tracking.tracking_uri)


def job_run_dir(config: DictConfig, job_return: JobReturn) -> Path | None:
    """The folder of the ragft run a job ran: the folder the job returned; for a tuning trial (which
    returns its objective) or a failed job, the folder its config names (as
    `ragft.recipe.run_experiment_arm` names it); None where that folder holds no record (a job that
    failed before any work, a job of another command)."""
    value = job_return._return_value  # `return_value` raises a failed job's error
    if isinstance(value, Path):
        run_dir: Path | None = value
    elif job_return.status == JobStatus.FAILED or isinstance(value, (int, float)):
        run_dir = _configured_run_dir(config)
    else:
        return None
    return run_dir if run_dir is not None and (run_dir / RECORD_FILE).is_file() else None


def _configured_run_dir(config: DictConfig) -> Path | None:
    from ragft.config.identity import run_folder, run_identity
    from ragft.eval.registry import primary_metric

    try:
        identity = run_identity(config, primary_metric(config.task))
        return run_folder(config, identity)
    except Exception as err:  # noqa: BLE001 - a config that cannot name a run has no run to log
        log.debug("MLflow: no run folder for this job: %s", one_line(err))
        return None


def log_run(tracking: Mapping[str, Any], run_dir: Path) -> tuple[str, bool]:
    """Log the ragft run in `run_dir` as one MLflow run of `tracking.experiment_name` (found by its
    ragft run id, created where there is none); return the MLflow run's id and whether this attempt at
    the run was logged now (False: it was logged before, only the report is refreshed)."""
    from mlflow import MlflowClient

    record = read_record(run_dir)
    uri = str(tracking["tracking_uri"])
    with _store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        experiment_id = _experiment(client, str(tracking["experiment_name"]), artifact_location(tracking))
        existing = _logged(client, experiment_id, record.identity.run_id)
        if existing is not None and existing.data.tags.get(STARTED_TAG) == record.provenance.get("started"):
            _log_report(client, existing.info.run_id, run_dir.parent)  # a reused run: the report has changed
            return existing.info.run_id, False
        return _log_attempt(client, experiment_id, existing, record, run_dir), True


def _log_attempt(
    client: MlflowClient, experiment_id: str, existing: Run | None, record: RunRecord, run_dir: Path
) -> str:
    """Log a run not logged before, or the new attempt at a run logged before (a failed run run again)."""
    from mlflow.entities import Metric, Param, RunTag

    tags = run_tags(record)
    if existing is None:
        started = _ms(record.provenance.get("started"))
        run_id = client.create_run(
            experiment_id, start_time=started, tags=tags, run_name=record.identity.arm
        ).info.run_id
    else:
        run_id = existing.info.run_id
        for key in set(FAILURE_TAGS) & set(existing.data.tags) - set(tags):
            client.delete_tag(run_id, key)
    finished = _ms(record.provenance.get("finished"))
    logged_at = finished or int(time.time() * 1000)
    metrics = [Metric(key, value, logged_at, 0) for key, value in run_metrics(record).items()]
    params = [Param(key, value) for key, value in run_params(record).items()]
    client.log_batch(run_id, metrics=metrics, params=params, tags=[RunTag(k, v) for k, v in tags.items()])
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name))
    _log_report(client, run_id, run_dir.parent)
    client.set_terminated(run_id, "FINISHED" if record.status == "finished" else "FAILED", end_time=finished)
    return run_id


def _log_report(client: MlflowClient, run_id: str, exp_dir: Path) -> None:
    figures = sorted(exp_dir.glob("*.png"))
    for path in [exp_dir / name for name in REPORT_FILES] + figures:
        if path.is_file():
            client.log_artifact(run_id, str(path), "report")


def _experiment(client: MlflowClient, name: str, location: str | None) -> str:
    """The id of the experiment named `name`, created where there is none."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:  # created meanwhile by another job
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def _logged(client: MlflowClient, experiment_id: str, ragft_run_id: str) -> Run | None:
    """The MLflow run already logged for a ragft run, if any."""
    runs = client.search_runs([experiment_id], f"tags.`{RUN_ID_TAG}` = '{ragft_run_id}'", max_results=1)
    return runs[0] if runs else None


def artifact_location(tracking: Mapping[str, Any]) -> str | None:
    """Where a new experiment keeps its artifacts: `tracking.artifact_location`, else an `artifacts`
    folder beside a local SQLite database (MLflow's default is the working directory), else None (the
    tracking server's choice)."""
    if tracking.get("artifact_location"):
        return str(tracking["artifact_location"])
    database = _sqlite_file(str(tracking["tracking_uri"]))
    return (database.parent / "artifacts").as_uri() if database else None


def _sqlite_file(uri: str) -> Path | None:
    path = uri[len(SQLITE) :].split("?", 1)[0] if uri.startswith(SQLITE) else ""
    return Path(path).resolve() if path and path != ":memory:" else None


def _store_lock(uri: str) -> contextlib.AbstractContextManager[Any]:
    """A file lock beside a local SQLite database: jobs running at once log one after another (and so
    create the database and the experiment once)."""
    from filelock import FileLock

    database = _sqlite_file(uri)
    if database is None:
        return contextlib.nullcontext()
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(database.with_name(f".{database.name}.lock")))


# --- what is logged ----------------------------------------------------------------------------------------


def run_tags(record: RunRecord) -> dict[str, str]:
    """The run's identity (`ragft.<field>`), status, provenance that is text, and where it failed."""
    ident = {k: v for k, v in asdict(record.identity).items() if k != "settings" and v is not None}
    tags = {"run_id": record.identity.run_id, "status": record.status, **ident}
    tags.update({k: v for k, v in record.provenance.items() if isinstance(v, str)})
    if record.failure:
        tags.update(failed_stage=record.failure.stage, error=f"{record.failure.error}: {record.failure.message}")
    return {mlflow_key(f"ragft.{k}"): _cut(one_line(v), TAG_VALUE_LIMIT) for k, v in tags.items()}


def run_params(record: RunRecord) -> dict[str, str]:
    """The run's result-relevant settings (flattened), as text: JSON where not a string, a value
    longer than MLflow servers take cut short (config.yaml, an artifact, holds it whole)."""
    params: dict[str, str] = {}
    for key, value in record.identity.settings.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        params.setdefault(mlflow_key(key), _cut(text, PARAM_VALUE_LIMIT))
    return params


def run_metrics(record: RunRecord) -> dict[str, float]:
    """Each score's mean and interval, and the table row's numeric cost figures, leak rates and scores
    on other test sets, and the run's wall time."""
    metrics: dict[str, float] = {}
    for name, summary in record.scores.items():
        for suffix, value in (("", summary.mean), ("_ci_low", summary.ci_low), ("_ci_high", summary.ci_high)):
            metrics[mlflow_key(name + suffix)] = float(value)
    row = record.table_row()
    row["wall_s"] = record.provenance.get("wall_s")
    for key, value in row.items():
        if (key.startswith(METRIC_PREFIXES) or key == "wall_s") and _numeric(value):
            metrics.setdefault(mlflow_key(key), float(value))
    return metrics


def mlflow_key(name: str) -> str:
    """`name` as a valid MLflow parameter, metric or tag name: `@` as `_at_` (`recall@5` ->
    `recall_at_5`), any other character MLflow refuses as `_`, slashes only where they make a path."""
    key = re.sub(r"[^\w.\- /]", "_", name.replace("@", "_at_"))[:KEY_LIMIT]
    if posixpath.normpath(key) != key or key.startswith(("..", "/")):
        key = key.replace("/", "_").lstrip(".") or "_"
    return key


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms(timestamp: Any) -> int | None:
    """An ISO time (the record's provenance) in milliseconds since the epoch; None where there is none."""
    try:
        return int(datetime.fromisoformat(str(timestamp)).timestamp() * 1000)
    except ValueError:
        return None
