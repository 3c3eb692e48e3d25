"""What ragft's Hydra commands share: offline mode, the `ragft_root` resolver, command-line keys
checked against ragft's config schema before Hydra composes, and errors a user can act on printed as
one line instead of a traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ragft.errors import ConfigError, RagftError

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


def check_command_line(argv: Sequence[str] | None = None) -> None:
    """Exit with status 2 and one line naming the key when an override on the command line sets a key
    ragft's config does not have (`trainig.epochs=3`, `+training.epoch=3`). Call it before the Hydra
    entry point: Hydra would stop a misspelt key without `+` with its own message, which advises adding
    it with `+`, and accept one with `+`."""
    from hydra._internal.utils import get_args_parser  # the parser @hydra.main itself uses

    from ragft.config.schema import check_override_keys

    args, _ = get_args_parser().parse_known_args(sys.argv[1:] if argv is None else list(argv))
    try:
        check_override_keys(args.overrides)
    except ConfigError as err:
        print(f"ragft: error: {err}", file=sys.stderr)
        sys.exit(2)
