"""Hydra entry point: `python -m ragft.run +exp=medical_reports` (every arm, then the report) or a
single arm, `python -m ragft.run arm=lora_rag`. See conf/config.yaml for every setting."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ragft.errors import RagftError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
OmegaConf.register_new_resolver("ragft_root", lambda: str(Path(__file__).resolve().parent.parent), replace=True)
log = logging.getLogger("ragft")


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from ragft.pipeline import run_experiment_arm

    try:
        run_experiment_arm(cfg)
    except RagftError as err:
        log.error("%s", err)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra records the job as failed, runs the other jobs, then reports the error
        print(f"ragft: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
