"""Content-addressed cache for expensive artefacts: written atomically, locked against concurrent writers."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from ragft import processes

log = logging.getLogger(__name__)

CACHE_ENV = "RAGFT_CACHE"
BUILD_RECORD = ".build.json"  # in each cached folder: how long building it took, cold


def cache_root() -> Path:
    """`$RAGFT_CACHE`, else `$XDG_CACHE_HOME/ragft`, else `~/.cache/ragft`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "ragft"


def content_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (configs, file digests, ids)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def cached_dir(
    kind: str, key: str, build: Callable[[Path], None], root: Path | None = None, every_process: bool = False
) -> tuple[Path, bool]:
    """Return (`<root>/<kind>/<key>`, whether it was built now), building it with `build(tmp)` if absent.
    The time the build took is stored with it (`build_seconds`): what making it costs from a cold cache,
    whichever later run reuses it.

    The folder appears only when `build` finished (atomic rename), and a file lock makes concurrent
    jobs wait for one builder instead of building twice. In a multi-process run the main process builds
    and the others wait for it; with `every_process` (a build every process takes part in: data-parallel
    training) all of them build and the main one keeps it.
    """
    final = (root or cache_root()) / kind / key
    if every_process and processes.distributed():
        return _built_together(final, lambda: cached_dir(kind, key, build, root), build)
    if not processes.is_main():  # libraries save only on the main process of a process group
        return _built_by_main(final), False
    if final.is_dir():
        return final, False
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if final.is_dir():
            return final, False
        tmp = staging_dir(final)
        try:
            start = time.perf_counter()
            build(tmp)
            (tmp / BUILD_RECORD).write_text(json.dumps({"build_s": time.perf_counter() - start}))
            publish(tmp, final)
        except BaseException:
            drop(tmp)
            raise
    log.info("cached %s at %s", kind, final)
    return final, True


def _built_together(
    final: Path, build_and_keep: Callable[[], tuple[Path, bool]], build: Callable[[Path], None]
) -> tuple[Path, bool]:
    """`cached_dir` for a build in which every process takes part: whether to build is the main
    process's answer, so that either all of them build or none does."""
    if processes.from_main(final.is_dir()):
        return final, False
    if processes.is_main():
        build_and_keep()
    else:
        with tempfile.TemporaryDirectory() as scratch:
            build(Path(scratch))
    processes.wait_for_everyone()
    return final, True


MAIN_BUILD_TIMEOUT_S = 6 * 3600


def _built_by_main(final: Path) -> Path:
    """`final` once the main process of a multi-process run has built it (every process asks for the
    same folders, so the main one does build it)."""
    deadline = time.monotonic() + MAIN_BUILD_TIMEOUT_S
    while not final.is_dir():
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {processes.rank()} waited {MAIN_BUILD_TIMEOUT_S} s for {final}")
        time.sleep(0.5)
    return final


def build_seconds(folder: Path) -> float | None:
    """How long building a cached folder took when it was built; None for a folder cached before ragft
    recorded it."""
    try:
        return float(json.loads((folder / BUILD_RECORD).read_text())["build_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def staging_dir(final: Path) -> Path:
    """A hidden sibling folder of `final` to build it in (same file system, so publishing is a rename).

    Beside it, its lock file is held locked (flock) by this process until the folder is published or
    dropped: when the process dies, however it dies, the kernel releases the lock, which is how the next
    process tells a killed run's staging folder from a live one (`remove_stale_staging`), on any host or
    container sharing the folder, without trusting process ids."""
    remove_stale_staging(final.parent)
    handle, lock = tempfile.mkstemp(prefix=f".{final.name}{STAGING}", suffix=LOCK, dir=final.parent)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else can hold it
    staging = Path(lock[: -len(LOCK)])
    staging.mkdir()  # its name is as unique as its lock file's
    _held[staging] = handle
    return staging


STAGING, LOCK = ".staging-", ".lock"
_held: dict[Path, int] = {}  # staging folder -> the open, locked handle of its lock file


def remove_stale_staging(folder: Path) -> list[Path]:
    """Remove the staging folders in `folder` whose lock no process holds (their process was killed, or
    the machine lost power); return them."""
    stale = []
    for lock in sorted(folder.glob(f".*{STAGING}*{LOCK}")) if folder.is_dir() else []:
        try:
            handle = os.open(lock, os.O_RDWR)
        except FileNotFoundError:  # published or removed meanwhile
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live process is building it
            os.close(handle)
            continue
        staging = Path(str(lock)[: -len(LOCK)])
        shutil.rmtree(staging, ignore_errors=True)
        lock.unlink(missing_ok=True)
        os.close(handle)
        stale.append(staging)
    if stale:
        log.info("removed %d staging folder(s) of stopped runs in %s", len(stale), folder)
    return stale


def release(staging: Path) -> None:
    """Give up a staging folder this process made (after publishing or removing it): its lock file goes."""
    handle = _held.pop(staging, None)
    if handle is not None:
        Path(f"{staging}{LOCK}").unlink(missing_ok=True)
        os.close(handle)


def drop(staging: Path) -> None:
    """Remove a staging folder this process made, with its lock file."""
    shutil.rmtree(staging, ignore_errors=True)
    release(staging)


def publish(staging: Path, final: Path) -> None:
    """Move a finished staging folder into place in one rename, readable like any other folder."""
    staging.chmod(0o755)
    os.replace(staging, final)
    release(staging)


def dir_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
