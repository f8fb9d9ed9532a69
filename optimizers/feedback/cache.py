"""The feedback cache: LLM answers in SQLite, keyed by content, shared by every stage and run.

ROPG, Set-PL, RSPG, the report and the demo all read and write answers through this one file
(keyed by the generator's fingerprint and the exact messages), so no stage asks the reader what
another stage, an earlier epoch or an interrupted run already asked it. Each process of a launch
writes to a shard file of its own beside it, merged in one transaction per shard
(:mod:`optimizers.feedback.sharding`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from persona_rag.errors import CacheError, NoSpaceError, PersonaRAGError
from persona_rag.io import no_space_left

__all__ = ["FeedbackCache"]

# SQLite's primary result code (the low byte of an extended one) for a full database or disk.
_SQLITE_FULL = 13


def _integrity(path: Path) -> str:
    """SQLite's own verdict on the file (``PRAGMA quick_check``): ``ok``, or what is wrong."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as error:
        return str(error)
    return "; ".join(str(row[0]) for row in rows)


def _cache_failure(path: Path, error: sqlite3.DatabaseError) -> PersonaRAGError:
    """What a failed read or write of the cache ``path`` means for the user, in one line.

    A full disk (SQLite's SQLITE_FULL, or any failure with no space left there: an existing cache
    then reports "disk I/O error") loses nothing committed, and the file must be kept. Deleting
    the file is advised only when SQLite's integrity check says it is damaged; a failure on an
    intact file says so, since its answers cost LLM calls to recompute.
    """
    if getattr(error, "sqlite_errorcode", 0) & 0xFF == _SQLITE_FULL or no_space_left(error, path.parent):
        return NoSpaceError(
            f"{path}: no space left on the device for the feedback cache ({error}); the answers "
            "committed before are kept in it, and only the batch being written is computed again. "
            "Free some space and run again"
        )
    verdict = _integrity(path)
    if verdict == "ok":
        return CacheError(
            f"{path}: the feedback cache cannot be used ({error}), but its integrity check passes, so "
            "its answers are intact: keep the file, check that its folder is writable and the disk "
            "works, and run again"
        )
    return CacheError(
        f"{path}: the feedback cache is corrupt ({type(error).__name__}: {error}; integrity check: "
        f"{verdict}); delete or move the cache file {path} and run again (its answers are recomputed)"
    )


class FeedbackCache:
    """A persistent key -> JSON map in SQLite: each committed batch survives an interruption.

    A failure names the file and says what it means (:func:`_cache_failure`): a full disk raises
    :class:`~persona_rag.errors.NoSpaceError` and keeps what was committed; a file that is not a
    readable SQLite database of this layout, or holds a value that is not JSON, raises
    :class:`~persona_rag.errors.CacheError`, which advises moving the file aside only when it is
    really damaged: the cache only saves work, so that loses nothing but time.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            if no_space_left(error, self.path.parent):
                raise NoSpaceError(f"{self.path.parent}: no space left on the device ({error})") from error
            raise
        self._lock = threading.Lock()
        with self._readable():
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS feedback (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            self._db.commit()

    @contextmanager
    def _readable(self, path: Path | None = None) -> Iterator[None]:
        """Turn a failure on this cache file (or ``path``) into one clear error that says what it
        means and what to do."""
        path = path or self.path
        try:
            yield
        except json.JSONDecodeError as error:
            raise CacheError(
                f"{path}: the feedback cache holds a value that is not JSON (JSONDecodeError: {error}); "
                f"delete or move the cache file {path} and run again (its answers are recomputed)"
            ) from error
        except sqlite3.DatabaseError as error:
            raise _cache_failure(path, error) from error

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._lock, self._readable():
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, value in self._db.execute(
                    f"SELECT key, value FROM feedback WHERE key IN ({marks})", chunk
                ):
                    found[key] = json.loads(value)
        return found

    def put_many(self, rows: dict[str, Any]) -> None:
        with self._lock, self._readable(), self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO feedback (key, value) VALUES (?, ?)",
                [(key, json.dumps(value)) for key, value in rows.items()],
            )

    def __len__(self) -> int:
        with self._lock, self._readable():
            return int(self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def shard(self, rank: int) -> Path:
        """The file process ``rank`` of a multi-process launch writes its answers to, beside this
        one: one writer per file, so no two processes ever write the same SQLite database."""
        return self.path.with_name(f"{self.path.name}.shard-{rank}")

    def shards(self) -> list[Path]:
        """Shard files waiting to be merged (a launch of any size, finished or killed)."""
        return sorted(self.path.parent.glob(f"{self.path.name}.shard-*[0-9]"))

    def merge_shards(self) -> int:
        """Move every shard's rows into this cache, one transaction per shard, then delete it.

        A merge cut short leaves each shard either merged whole or not at all; a shard merged but
        not yet deleted is merged again, which changes nothing (the rows are keyed by content).
        Returns the number of rows moved.
        """
        moved = 0
        for shard in self.shards():
            with self._lock, self._readable(shard):
                self._db.execute("ATTACH DATABASE ? AS shard", (str(shard),))
                try:
                    tables = "SELECT 1 FROM shard.sqlite_master WHERE type = 'table' AND name = 'feedback'"
                    if self._db.execute(tables).fetchone():  # else killed before its first write
                        with self._db:
                            copy = "INSERT OR REPLACE INTO feedback SELECT key, value FROM shard.feedback"
                            moved += self._db.execute(copy).rowcount
                finally:
                    self._db.execute("DETACH DATABASE shard")
            for leftover in (shard, *(shard.with_name(shard.name + end) for end in ("-wal", "-shm"))):
                leftover.unlink(missing_ok=True)
        if moved:  # readers on other machines then find every row in the database file itself
            with self._lock:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return moved

    def close(self) -> None:
        with self._lock:
            self._db.close()
