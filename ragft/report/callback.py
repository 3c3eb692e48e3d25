"""Hydra callback: rebuild the experiment table and report when a run or a sweep ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class ReportCallback(Callback):
    def _report(self, config: DictConfig) -> None:
        from ragft.report.render import write_report

        exp_dir = Path(config.paths.results) / config.exp_name
        if exp_dir.is_dir():
            paths = write_report(exp_dir)
            if paths:
                log.info("report: %s", ", ".join(str(p) for p in paths))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._report(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._report(config)
