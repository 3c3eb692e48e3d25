"""Where and with what a run ran: timestamps, git commit, Python, device and library versions."""

from __future__ import annotations

import functools
import platform
import subprocess
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from ragft import processes
from ragft.record.memory import large_allocations_mapped_from


def started_now() -> datetime:
    _git_sha()  # the commit is read once, as the process's first run starts: the code it imported
    return datetime.now(timezone.utc)


def finished_at(started: datetime, resumed: bool = False) -> dict[str, Any]:
    """When the run started and finished, and what it ran with: where, with what, in how many processes
    and threads, under which Hydra launcher, and whether it resumed an interrupted attempt's work (then
    `started` is the last attempt's start, and its training and generation times cover every attempt)."""
    return {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": time.time() - started.timestamp(),
        "git_sha": _git_sha(),
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "versions": {p: _version(p) for p in ("torch", "transformers", "peft", "sentence-transformers", "faiss-cpu")},
        # training.return_freed_memory in this run or an earlier one of the same process: it changes memory
        "large_allocations_mapped_from_bytes": large_allocations_mapped_from(),
        "processes": processes.world_size(),
        "torch_threads": torch.get_num_threads(),
        "launcher": _launcher(),
        "resumed": resumed,
    }


def _launcher() -> str:
    """The Hydra launcher that started the job (`basic`, `joblib`, `submitit_local`, ...), or `none`."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "none"
    return str(HydraConfig.get().runtime.choices.get("hydra/launcher", "basic"))


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


@functools.cache
def _git_sha() -> str:
    """The checkout's commit when the process first asked: a sweep in one process runs the code it
    imported, whatever is committed while it runs."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
