"""Atomic file writes: a reader (or a crash) never sees a half-written file or directory.

A write that fails on a full file system raises :class:`~persona_rag.errors.NoSpaceError`, one
line naming the path: the file or directory there before is left as it was, and the partial copy
is removed, so the space it took is free again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persona_rag.errors import NoSpaceError

__all__ = [
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "no_space_left",
]

# Below this many free bytes, a write that failed for a reason its library does not name (torch
# and safetensors report a failed write without the errno) failed because the disk is full.
_NEARLY_FULL = 1 << 20


def no_space_left(error: BaseException, where: str | Path) -> bool:
    """Whether ``error``, raised while writing under ``where``, means the file system is full:
    ENOSPC or EDQUOT, a library's report of it ("No space left on device"), or a write that failed
    without an errno (torch, safetensors) with (almost) no space left there."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    if os.strerror(errno.ENOSPC) in str(error):
        return True
    existing = Path(where)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        return shutil.disk_usage(existing).free < _NEARLY_FULL
    except OSError:
        return False


def _no_space(path: Path, error: BaseException) -> NoSpaceError:
    what = "directory" if path.is_dir() else "file"
    before = f"the {what} already there is kept as it was" if path.exists() else "nothing was written there"
    return NoSpaceError(f"{path}: no space left on the device; {before}. Free some space and run again")


@contextlib.contextmanager
def _said_when_full(path: Path) -> Iterator[None]:
    """An OSError of a full file system while writing ``path`` becomes a NoSpaceError naming it."""
    try:
        yield
    except OSError as error:
        if isinstance(error, NoSpaceError) or not no_space_left(error, path.parent):
            raise
        raise _no_space(path, error) from error


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    Raises:
        NoSpaceError: the file system is full (``path`` keeps its previous content).
    """
    path = Path(path)
    with _said_when_full(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            try:
                remaining = memoryview(data)
                while remaining:  # os.write may write less than asked
                    remaining = remaining[os.write(handle, remaining) :]
                os.fsync(handle)
            finally:
                os.close(handle)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` only if the block finishes.

    Used for model checkpoints: ``save_pretrained`` writes several files, and a run killed half-way
    must leave the previous checkpoint (or nothing), never a mix.

    Raises:
        NoSpaceError: the block failed on a full file system (``path`` is left as it was).
    """
    path = Path(path)
    with _said_when_full(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield temporary
        backup = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(path, backup)
        os.replace(temporary, path)
        shutil.rmtree(backup, ignore_errors=True)
    except BaseException as error:
        # Asked before the partial copy is removed (its space is free again afterwards); a
        # NoSpaceError is a file written inside the block, which the caller knows as ``path``.
        full = isinstance(error, NoSpaceError) or (
            isinstance(error, Exception) and no_space_left(error, temporary)
        )
        shutil.rmtree(temporary, ignore_errors=True)
        if full:
            raise _no_space(path, error) from error
        raise
