"""Peak memory of a stretch of work (a run, its training, its generation), each stretch its own.

The jobs of a Hydra sweep run in one process. Memory an earlier job freed can stay resident (the C
allocator keeps freed heap pages; objects in reference cycles wait for the garbage collector), and the
kernel's high-water mark of resident memory is the process's, not the job's. So a measured stretch
starts from released memory (garbage collected, the CUDA cache emptied, free heap pages handed back to
the system with glibc's `malloc_trim`), records what is resident then, and resets the kernel's peak
counter (`VmHWM`, by writing 5 to /proc/self/clear_refs) so that the peak it reads at its end is its
own. Where /proc offers neither (not Linux), a thread samples the resident memory instead, which can
miss a peak shorter than its interval.

Stretches nest (a run's whole peak holds its training and generation peaks): before a counter is
reset, every stretch still open takes the counter's peak so far, so an outer stretch still covers what
happened inside an inner one. CUDA's peak counter is handled the same way.

`map_large_allocations` is the other half: glibc keeps memory a program frees in its heap for reuse,
so a training step's freed activations stay resident, and the resident peak is well above what was
ever alive at once. Serving large allocations with their own memory mappings hands each back when it
is freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psutil
import torch

log = logging.getLogger(__name__)
MB = 2**20
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
RESET_PEAK = "5"  # clear_refs: reset the peak resident set size (VmHWM) to the current one
LEFT_OVER_WARNING_MB = 1024  # resident at a stretch's start beyond the first one's: worth a warning
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MAPPED_FROM_BYTES = 2**20  # activations of a training step are megabytes each; small objects stay in the heap


@dataclass
class MemoryCost:
    """Peak resident memory of a stretch of work and what was resident when it began (after memory
    earlier work freed was released). `peak_source` says how the peak was read: "kernel" (the
    kernel's high-water mark since the stretch began: exact) or "sampled" (resident memory sampled
    every 0.1 s: a shorter peak can be missed; records made before the kernel's mark was used)."""

    peak_rss_mb: float = 0.0
    rss_at_start_mb: float = 0.0
    peak_cuda_mb: float | None = None
    peak_source: str = "sampled"


def resident_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


def kernel_peak_bytes() -> int | None:
    """The kernel's high-water mark of this process's resident memory (VmHWM), None where unknown."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


@cache
def kernel_peak_resets() -> bool:
    """True where this process can reset and read the kernel's peak of its resident memory (Linux)."""
    return kernel_peak_bytes() is not None and _reset_kernel_peak()


def _reset_kernel_peak() -> bool:
    try:
        CLEAR_REFS.write_text(RESET_PEAK)
    except OSError:
        return False
    return True


def release_memory() -> None:
    """Hand back what is freed but still held: unreachable cycles, CUDA's cached blocks, and the free
    pages of the C heap (glibc only; elsewhere a no-op)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # no C library found, or one without malloc_trim (musl)
        return None
    return trim


_mapped_from: int | None = None  # the threshold set in this process, if any


def large_allocations_mapped_from() -> int | None:
    """The threshold `map_large_allocations` set in this process (it holds for every later run of the
    process, a sweep's next jobs included), or None."""
    return _mapped_from


def map_large_allocations(threshold: int = MAPPED_FROM_BYTES) -> bool:
    """glibc: serve every allocation of `threshold` bytes or more with a memory mapping of its own, which
    goes back to the system the moment it is freed (by default glibc raises its threshold as large blocks
    are freed, and keeps them in the heap for reuse). It holds for the rest of the process; it changes
    no computed value. False where the C library has no `mallopt` (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    global _mapped_from
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    _mapped_from = threshold if done else _mapped_from
    return done


def _cuda_peak_bytes() -> int | None:
    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


_OPEN: list[PeakMemory] = []  # stretches being measured, outermost first
_FIRST_START: list[int] = []  # resident memory at the first measured start in this process


class PeakMemory:
    """Measures a stretch of work's peak resident memory (and CUDA's), from released memory:

    with PeakMemory("training") as memory:
        ...
    memory.record()  # MemoryCost
    """

    def __init__(self, label: str = "", interval_s: float = 0.1, release: bool = True) -> None:
        self.label = label
        self.interval_s = interval_s
        self.release = release
        self.kernel = kernel_peak_resets()
        self.start_rss = 0
        self.peak_rss = 0
        self.peak_cuda: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.release:
            release_memory()
        self.start_rss = self.peak_rss = resident_bytes()
        self._check_start()
        for stretch in _OPEN:  # the counters are about to be reset: open stretches keep their peaks
            stretch._take_peaks()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        if self.kernel:
            self.kernel = _reset_kernel_peak()
        if not self.kernel:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        _OPEN.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._take_peaks()
        _OPEN.remove(self)
        if self._thread is not None:
            self._stop.set()
            self._thread.join()

    def _take_peaks(self) -> None:
        """Fold the counters' peaks since the last reset into this stretch's."""
        kernel = kernel_peak_bytes() if self.kernel else None
        self.peak_rss = max(self.peak_rss, kernel or 0, resident_bytes())
        cuda = _cuda_peak_bytes()
        if cuda is not None:
            self.peak_cuda = max(self.peak_cuda or 0, cuda)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, resident_bytes())
            self._stop.wait(self.interval_s)

    def _check_start(self) -> None:
        """Log what is resident as the stretch starts; warn where it is well above what was resident at
        the first measured start in this process (what earlier work left allocated counts in the peak)."""
        if not _FIRST_START:
            _FIRST_START.append(self.start_rss)
        name = self.label or "measured stretch"
        left = (self.start_rss - _FIRST_START[0]) / MB
        log.info("%s: %.0f MB resident at start (%+.0f MB against the first start)", name, self.start_rss / MB, left)
        if left > LEFT_OVER_WARNING_MB:
            log.warning(
                "%s starts with %.0f MB more resident than the first measured start in this process: memory "
                "earlier work left allocated is counted in its peak (run it in a process of its own to exclude it).",
                name,
                left,
            )

    def record(self) -> MemoryCost:
        if self in _OPEN:
            self._take_peaks()
        return MemoryCost(
            peak_rss_mb=self.peak_rss / MB,
            rss_at_start_mb=self.start_rss / MB,
            peak_cuda_mb=None if self.peak_cuda is None else self.peak_cuda / MB,
            peak_source="kernel" if self.kernel else "sampled",
        )
