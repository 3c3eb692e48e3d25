"""What ragft's Hydra commands share: offline mode, the `ragft_root` resolver, and errors a user can
act on printed as one line instead of a traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ragft.errors import RagftError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
OmegaConf.register_new_resolver("ragft_root", lambda: str(Path(__file__).resolve().parent.parent), replace=True)
log = logging.getLogger("ragft")


def run_job(job: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run one Hydra job; a RagftError stops a single run with exit status 2, and in a sweep fails only
    this job (Hydra runs the others, then reports the error)."""
    try:
        return job(cfg)
    except RagftError as err:
        log.error("%s", err)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"ragft: error: {err}", file=sys.stderr)
        sys.exit(2)
