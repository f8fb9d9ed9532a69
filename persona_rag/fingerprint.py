"""Content fingerprints: what a cached answer or a resumed run was computed from.

A folder name says nothing about what is in it (``runs/a/best`` and ``runs/b/best``, or a
checkpoint retrained in place), so caches and resume states are keyed by the *content* of model
files and data instead. Hashing a 0.5 GB checkpoint takes about half a second, so each file's
digest is remembered per (path, size, mtime, ctime, inode), in memory and in
``$PERSONA_RAG_CACHE/fingerprints.json``; a file that is rewritten gets a new ctime and inode and is
hashed again. A file modified in the last two seconds is hashed but not remembered: timestamps
are coarser than a quick rewrite, so a same-size rewrite could otherwise keep its old key (git's
"racy" rule).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from persona_rag.io import atomic_write_json

__all__ = [
    "cache_dir",
    "directory_fingerprint",
    "file_digest",
    "json_value",
    "public_settings",
    "stable_hash",
]

_MEMORY: dict[str, str] = {}
_RACY_SECONDS = 2.0
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where persona-rag keeps machine-level caches (dequantized models, file digests)."""
    return Path(os.environ.get("PERSONA_RAG_CACHE", Path.home() / ".cache" / "persona_rag"))


def _digest_store() -> Path:
    return cache_dir() / "fingerprints.json"


def _read_store() -> dict[str, str]:
    """The on-disk digests; an unreadable file only costs a re-hash, so it is ignored."""
    try:
        stored = json.loads(_digest_store().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            sha.update(block)
    return sha.hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, remembered per (path, size, mtime, ctime, inode)."""
    path = Path(path).resolve()
    stat = path.stat()
    if time.time() - max(stat.st_mtime, stat.st_ctime) < _RACY_SECONDS:
        return _sha256(path)  # may still be changing within one timestamp tick: never remembered
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"
    with _LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
    stored = _read_store()
    digest = stored.get(key)
    if not isinstance(digest, str):
        digest = _sha256(path)
        # Keep the file small: forget earlier versions of this file and files that are gone.
        stored = {
            k: v
            for k, v in stored.items()
            if not k.startswith(f"{path}|") and Path(k.split("|", 1)[0]).exists()
        }
        stored[key] = digest
        with contextlib.suppress(OSError):  # a read-only cache directory only costs re-hashing
            atomic_write_json(_digest_store(), stored, indent=None)
    with _LOCK:
        _MEMORY[key] = digest
    return digest


def directory_fingerprint(path: str | Path) -> str:
    """SHA-256 over the relative names and digests of every file under ``path`` (hidden ones
    skipped: they are temporary files of atomic writes), e.g. a Hugging Face checkpoint."""
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a model directory")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise FileNotFoundError(f"{root}: no files to fingerprint")
    return stable_hash([[p.relative_to(root).as_posix(), file_digest(p)] for p in files])


def json_value(value: Any) -> Any:
    """JSON form of what ``json`` cannot write itself (its ``default=``): dataclasses, paths, numpy
    and torch values, sets."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def stable_hash(value: Any) -> str:
    """SHA-256 of ``value``'s canonical JSON (sorted keys), the same in every process."""
    text = json.dumps(value, sort_keys=True, default=json_value, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def public_settings(obj: Any, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The public attributes of ``obj`` that hold plain values or tuples of them (its settings),
    minus ``exclude``. Lists are left out: they are state that grows (a DSPy module's ``history``).

    Fingerprints take settings this way rather than from a list, so a setting added later (a new
    decoding or scoring option) changes the fingerprint without anyone having to remember it.
    """
    plain = (str, int, float, bool, type(None))
    return {
        name: value
        for name, value in sorted(vars(obj).items())
        if not name.startswith("_")
        and name not in exclude
        and (
            isinstance(value, plain)
            or (isinstance(value, tuple) and all(isinstance(v, plain) for v in value))
        )
    }
