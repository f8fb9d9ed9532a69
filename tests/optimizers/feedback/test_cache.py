"""optimizers.feedback.cache: a file that is not a cache, a corrupt value, and a full disk, which is
not a corrupt cache."""

from __future__ import annotations

import pytest

from optimizers.feedback import FeedbackCache
from persona_rag.errors import CacheError, NoSpaceError


def test_a_file_that_is_not_a_cache_is_a_clear_error(tmp_path):
    path = tmp_path / "feedback.sqlite"
    path.write_bytes(b"not an SQLite database at all " * 64)
    with pytest.raises(CacheError, match="delete or move the cache file") as info:
        FeedbackCache(path)
    assert str(path) in str(info.value) and "DatabaseError" in str(info.value)


def test_a_corrupt_value_in_the_cache_is_a_clear_error(tmp_path):
    import sqlite3

    path = tmp_path / "feedback.sqlite"
    cache = FeedbackCache(path)
    cache.put_many({"good": {"output": "4"}})
    cache.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO feedback (key, value) VALUES ('bad', '{\"output\": ')")
    cache = FeedbackCache(path)
    assert cache.get_many(["good"]) == {"good": {"output": "4"}}
    with pytest.raises(CacheError, match=f"delete or move the cache file {path}") as info:
        cache.get_many(["good", "bad"])
    assert "JSONDecodeError" in str(info.value)


ANSWERS = {f"key-{i}": {"output": str(i % 5 + 1), "label_scores": None} for i in range(192)}


def filled_cache(tmp_path):
    path = tmp_path / "feedback.sqlite"
    cache = FeedbackCache(path)
    cache.put_many(ANSWERS)
    cache.close()
    return path


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk()``: from then on, SQLite connections cannot grow their file by a page: SQLite's
    own SQLITE_FULL, as on a full file system (``PRAGMA max_page_count``), without mounting one."""
    import sqlite3

    connect = sqlite3.connect

    def no_room(database, *args, **kwargs):
        db = connect(database, *args, **kwargs)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
        return db

    return lambda: monkeypatch.setattr(sqlite3, "connect", no_room)


def assert_full_disk_message(error, path):
    message = str(error)
    assert message.startswith(f"{path}: no space left on the device") and "\n" not in message
    assert "committed before are kept" in message and "delete" not in message


def test_a_full_disk_keeps_every_committed_answer_and_never_advises_deleting_them(
    tmp_path, full_disk, monkeypatch
):
    path = filled_cache(tmp_path)
    full_disk()
    cache = FeedbackCache(path)  # opening needs no new page
    with pytest.raises(NoSpaceError) as info:
        cache.put_many({f"new-{i}": {"output": "x" * 2000} for i in range(64)})
    assert_full_disk_message(info.value, path)
    assert cache.get_many(list(ANSWERS)) == ANSWERS
    cache.close()
    monkeypatch.undo()  # space freed: every answer committed before is there
    assert FeedbackCache(path).get_many(list(ANSWERS)) == ANSWERS


def test_a_new_cache_on_a_full_disk_says_no_space_left(tmp_path, full_disk):
    full_disk()
    with pytest.raises(NoSpaceError) as info:
        FeedbackCache(tmp_path / "feedback.sqlite")
    assert_full_disk_message(info.value, tmp_path / "feedback.sqlite")


class FailingWrites:
    """A cache connection whose writes fail with ``error``, reads working: a disk that refuses."""

    def __init__(self, db, error) -> None:
        self.db, self.error = db, error

    def executemany(self, *args):
        raise self.error

    def __getattr__(self, name):
        return getattr(self.db, name)

    def __enter__(self):
        return self.db.__enter__()

    def __exit__(self, *exc):
        return self.db.__exit__(*exc)


def disk_io_error(monkeypatch, *, free: int):
    """Writes to the cache fail with SQLite's "disk I/O error" (SQLITE_IOERR_WRITE, what an existing
    cache reports on a full disk); the file system has ``free`` bytes left."""
    import shutil
    import sqlite3
    from collections import namedtuple

    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode, error.sqlite_errorname = 778, "SQLITE_IOERR_WRITE"
    connect = sqlite3.connect

    def failing(database, *args, **kwargs):
        db = connect(database, *args, **kwargs)
        return db if str(database).startswith("file:") else FailingWrites(db, error)

    monkeypatch.setattr(sqlite3, "connect", failing)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - free, free))


def test_a_disk_io_error_on_a_full_disk_is_a_full_disk(tmp_path, monkeypatch):
    path = filled_cache(tmp_path)
    disk_io_error(monkeypatch, free=0)
    cache = FeedbackCache(path)
    with pytest.raises(NoSpaceError) as info:
        cache.put_many({"new": {"output": "4"}})
    assert_full_disk_message(info.value, path)


def test_an_intact_cache_that_cannot_be_written_is_kept_on_its_integrity_check(tmp_path, monkeypatch):
    path = filled_cache(tmp_path)
    disk_io_error(monkeypatch, free=10**9)
    cache = FeedbackCache(path)
    with pytest.raises(CacheError) as info:
        cache.put_many({"new": {"output": "4"}})
    message = str(info.value)
    assert (
        message.startswith(f"{path}: ") and "integrity check passes" in message and "keep the file" in message
    )
    assert "delete" not in message
    monkeypatch.undo()
    assert FeedbackCache(path).get_many(list(ANSWERS)) == ANSWERS


def test_a_cache_damaged_inside_is_what_deleting_is_advised_for(tmp_path):
    path = filled_cache(tmp_path)
    data = bytearray(path.read_bytes())
    page = 4096
    data[page : 3 * page] = b"\xff" * (2 * page)  # overwrite table pages, keep the header
    path.write_bytes(bytes(data))
    with pytest.raises(
        CacheError, match=f"corrupt .*integrity check: .*delete or move the cache file {path}"
    ):
        FeedbackCache(path).get_many(list(ANSWERS))
