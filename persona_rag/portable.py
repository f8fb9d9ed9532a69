"""State files that move with their folder.

A trained selector's ``selector.json`` names the checkpoints it needs: its own network and the
tuned retrievers of its pool, all written by the same run into one output folder. Recorded as
absolute paths, moving or copying that folder (to another machine, or renaming a demo run) left
a state that points at the old place. Here, a path inside the run's ``root`` is written relative
to the state file (``./best``, ``../ropg-kd/best``) and read back against the file's own folder;
a path outside ``root`` (a model the user keeps elsewhere) stays absolute.

Only strings that start with ``./`` or ``../`` are read as relative paths: every path that exists
when the state is written is made absolute or marked that way, so a name such as ``bm25`` or a
hub-style encoder name is never mistaken for one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from persona_rag.errors import DataError
from persona_rag.io import atomic_write_json

__all__ = ["read_portable_json", "write_portable_json"]

_RELATIVE = ("./", "../")


def write_portable_json(path: str | Path, data: Any, *, root: str | Path) -> Path:
    """Write ``data`` atomically, its paths inside ``root`` relative to ``path``'s folder."""
    path = Path(path)
    folder, inside = path.parent.resolve(), Path(root).resolve()

    def portable(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: portable(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [portable(item) for item in value]
        if not isinstance(value, str) or not _names_a_path(value):
            return value
        target = Path(value).resolve()
        if not target.is_relative_to(inside):
            return str(target)
        relative = os.path.relpath(target, folder)
        return relative if relative.startswith("../") else f"./{relative}"

    return atomic_write_json(path, portable(data))


def read_portable_json(path: str | Path) -> Any:
    """Read a file :func:`write_portable_json` wrote, its relative paths made absolute again.

    Raises:
        DataError: when the file is missing or not JSON (naming the file).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable JSON state file ({error})") from error
    folder = path.parent.resolve()

    def absolute(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: absolute(item) for key, item in value.items()}
        if isinstance(value, list):
            return [absolute(item) for item in value]
        if isinstance(value, str) and value.startswith(_RELATIVE):
            return str((folder / value).resolve())
        return value

    return absolute(data)


def _names_a_path(value: str) -> bool:
    """An existing file or folder named absolutely, relative to the working folder with a
    separator, or already marked relative: what :func:`write_portable_json` rewrites."""
    if not value or "\n" in value or len(value) > 4096:
        return False
    if not (os.path.isabs(value) or "/" in value or value.startswith(_RELATIVE)):
        return False
    return Path(value).exists()
