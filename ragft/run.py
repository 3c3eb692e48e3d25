"""Hydra entry point: `python -m ragft.run +exp=medical_reports` (every arm, then the report) or a
single arm, `python -m ragft.run arm=lora_rag`. See conf/config.yaml for every setting."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from ragft.cli import command, run_job


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> Any:
    from ragft.tune import run_arm

    return run_job(run_arm, cfg)  # a tuning trial's objective, for a sweeper that optimises it


if __name__ == "__main__":
    command(main)
