"""Atomic writes: readers never see a half-written file or directory, failures leave no debris."""

from __future__ import annotations

import errno
import json
import os
import re

import pytest

from persona_rag.errors import NoSpaceError
from persona_rag.io import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text


def names(directory) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_write_bytes_text_json(tmp_path):
    assert atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01") == tmp_path / "a.bin"
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    atomic_write_text(tmp_path / "b.txt", "héllo")
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo"
    atomic_write_json(tmp_path / "c.json", {"k": ["é", 1]})
    text = (tmp_path / "c.json").read_text(encoding="utf-8")
    assert json.loads(text) == {"k": ["é", 1]} and "é" in text and text.endswith("\n")
    atomic_write_json(tmp_path / "d.json", [1, 2], indent=None)
    assert (tmp_path / "d.json").read_text() == "[1, 2]\n"
    assert names(tmp_path) == ["a.bin", "b.txt", "c.json", "d.json"]  # no temporary files left


def test_creates_parents_and_overwrites(tmp_path):
    target = tmp_path / "x" / "y" / "f.txt"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert names(target.parent) == ["f.txt"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert names(tmp_path) == ["f.txt"]


def test_unserialisable_json_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "f.json", {"x": object()})
    assert names(tmp_path) == []


def test_atomic_directory_replaces_on_success(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with atomic_directory(target) as temporary:
        assert temporary != target and temporary.parent == tmp_path
        (temporary / "new.bin").write_text("new")
        assert (target / "old.bin").exists()  # the old checkpoint is untouched while writing
    assert names(target) == ["new.bin"]
    assert names(tmp_path) == ["ckpt"]  # no temporary or backup directory left


def test_atomic_directory_creates_a_new_directory(tmp_path):
    target = tmp_path / "deep" / "ckpt"
    with atomic_directory(target) as temporary:
        (temporary / "f").write_text("1")
    assert (target / "f").read_text() == "1"
    assert names(target.parent) == ["ckpt"]


def test_failure_inside_atomic_directory_leaves_the_old_directory(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "weights.bin").write_text("good")
    with pytest.raises(RuntimeError, match="killed"), atomic_directory(target) as temporary:
        (temporary / "weights.bin").write_text("half")
        raise RuntimeError("killed half-way")
    assert names(target) == ["weights.bin"]
    assert (target / "weights.bin").read_text() == "good"
    assert names(tmp_path) == ["ckpt"]


def test_failure_without_old_directory_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_directory(tmp_path / "ckpt") as temporary:
        (temporary / "f").write_text("x")
        raise KeyboardInterrupt
    assert names(tmp_path) == []


# ------------------------------------------------------------------ a full disk: one line, nothing lost
def full_disk_write(fd, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("existing", [True, False])
def test_a_full_disk_is_one_line_naming_the_file_and_keeping_what_was_there(tmp_path, monkeypatch, existing):
    target = tmp_path / "results.json"
    if existing:
        target.write_text("old")
    monkeypatch.setattr(os, "write", full_disk_write)
    with pytest.raises(NoSpaceError) as info:
        atomic_write_json(target, {"results": []})
    message = str(info.value)
    assert message.startswith(f"{target}: no space left on the device") and "\n" not in message
    kept = "the file already there is kept as it was" if existing else "nothing was written there"
    assert kept in message
    assert names(tmp_path) == (["results.json"] if existing else [])  # no partial temporary left
    if existing:
        assert target.read_text() == "old"


@pytest.mark.parametrize(
    "failure",
    [
        OSError(errno.ENOSPC, "No space left on device"),  # transformers' tokenizer files
        RuntimeError('Error while serializing: IoError(Os { code: 28, message: "No space left on device" })'),
        RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"),  # no errno
    ],
)
def test_a_checkpoint_save_on_a_full_disk_keeps_the_last_checkpoint(tmp_path, monkeypatch, failure):
    import shutil
    from collections import namedtuple

    target = tmp_path / "best"
    target.mkdir()
    (target / "weights.bin").write_text("good")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 0))  # the disk is full
    expected = rf"^{re.escape(str(target))}: no space left .* directory already there is kept"
    with pytest.raises(NoSpaceError, match=expected), atomic_directory(target) as temporary:
        (temporary / "weights.bin").write_text("half")
        raise failure
    assert names(target) == ["weights.bin"] and (target / "weights.bin").read_text() == "good"
    assert names(tmp_path) == ["best"]


def test_a_failed_save_with_space_left_is_not_called_a_full_disk(tmp_path):
    with pytest.raises(RuntimeError, match="file write failed"), atomic_directory(tmp_path / "best"):
        raise RuntimeError("file write failed")  # this test's disk has room: some other failure
