"""The processes of one run: one, or several started by `accelerate launch` / `torchrun`.

Every process of a multi-process run runs the whole recipe. Training is data-parallel (the HF Trainer
takes the process group from accelerate: DDP, or FSDP / DeepSpeed from an accelerate config); test-set
generation is split by batch across the processes and gathered in order; only the main process locks,
scores and writes the run's record. Nothing here is used, and nothing is initialised, in a run of one
process: torchrun's environment (`WORLD_SIZE` above 1) is what turns it on.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


def world_size() -> int:
    """How many processes run this run (torchrun's `WORLD_SIZE`; 1 outside a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def distributed() -> bool:
    return world_size() > 1


def rank() -> int:
    """This process's place among them, 0 for the main one."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


@cache
def _state() -> Any:
    """accelerate's process state: it starts the process group (gloo on CPUs, NCCL on GPUs) once."""
    from accelerate.state import PartialState

    return PartialState()


def start() -> None:
    """Join the process group before any collective step (a no-op in a run of one process)."""
    if distributed():
        _state()


def wait_for_everyone() -> None:
    if distributed():
        _state().wait_for_everyone()


def gather(value: T) -> list[T]:
    """Every process's `value`, in rank order (`[value]` in a run of one process)."""
    if not distributed():
        return [value]
    import torch.distributed as dist

    _state()
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def from_main(value: T) -> T:
    """The main process's `value`, in every process."""
    if not distributed():
        return value
    import torch.distributed as dist

    _state()
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
