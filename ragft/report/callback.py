"""Hydra callback: after every job (one run, or one job of a sweep) refresh the experiment's table and
report, so the report covers every finished run even if a later job of the sweep fails."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class ReportCallback(Callback):
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        from ragft import processes
        from ragft.report.render import write_report

        if not processes.is_main():  # the main process of a multi-process run writes the record and the report
            return
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value
            log.error("job %s failed: %s: %s", job_return.overrides, type(error).__name__, error)
        exp_dir = Path(config.paths.results) / config.exp_name
        if exp_dir.is_dir() and (paths := write_report(exp_dir)):
            log.info("report: %s", paths[0])
