"""Content-addressed cache for expensive artefacts: written atomically, locked against concurrent writers."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

log = logging.getLogger(__name__)

CACHE_ENV = "RAGFT_CACHE"


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


def cached_dir(kind: str, key: str, build: Callable[[Path], None], root: Path | None = None) -> tuple[Path, bool]:
    """Return (`<root>/<kind>/<key>`, whether it was built now), building it with `build(tmp)` if absent.

    The folder appears only when `build` finished (atomic rename), and a file lock makes concurrent
    jobs wait for one builder instead of building twice.
    """
    final = (root or cache_root()) / kind / key
    if final.is_dir():
        return final, False
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if final.is_dir():
            return final, False
        tmp = staging_dir(final)
        try:
            build(tmp)
            publish(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("cached %s at %s", kind, final)
    return final, True


def staging_dir(final: Path) -> Path:
    """A hidden sibling folder of `final` to build it in (same file system, so publishing is a rename),
    named by this host and process so that the staging folders of killed processes can be recognised
    and removed (`remove_stale_staging`) and those of live ones, on any host, are left alone."""
    remove_stale_staging(final.parent)
    return Path(
        tempfile.mkdtemp(prefix=f".{final.name}{STAGING}{socket.gethostname()}-{os.getpid()}-", dir=final.parent)
    )


STAGING = ".staging-"


def remove_stale_staging(folder: Path) -> list[Path]:
    """Remove the staging folders in `folder` left by processes of this host that are no longer running
    (killed with SIGKILL, or the machine lost power); return them."""
    pattern = re.compile(rf"^\..+{re.escape(STAGING)}{re.escape(socket.gethostname())}-(\d+)-[^-]+$")
    stale = []
    for path in folder.iterdir() if folder.is_dir() else []:
        match = pattern.match(path.name)
        if match and path.is_dir() and not _running(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            stale.append(path)
    if stale:
        log.info("removed %d staging folder(s) of stopped runs in %s", len(stale), folder)
    return stale


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def publish(staging: Path, final: Path) -> None:
    """Move a finished staging folder into place in one rename, readable like any other folder."""
    staging.chmod(0o755)
    os.replace(staging, final)


def dir_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
