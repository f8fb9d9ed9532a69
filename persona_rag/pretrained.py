"""The one way persona-rag loads a Hugging Face model, tokenizer or encoder: weights and data files
only, never the folder's own Python.

A model folder whose ``config.json`` (or ``tokenizer_config.json``) has an ``auto_map`` ships
classes of its own; transformers would import them with ``trust_remote_code=True``, and without
that argument asks on stdin ("Do you wish to run the custom code? [y/N]"), so a ``y`` piped into
a command ran whatever a downloaded or hand-edited folder holds. Every load goes through
:func:`load_pretrained`, which refuses such a folder in one line naming the file, and passes
``trust_remote_code=False`` so that transformers never asks either. ``tests/test_pretrained.py``
checks that no other module calls ``from_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from persona_rag.errors import DataError

__all__ = ["load_pretrained", "refuse_custom_code"]

# The files in which a model folder can ask transformers to import its own classes.
_CODE_MAPS = ("config.json", "tokenizer_config.json")


def _local_file(name_or_path: str, filename: str) -> Path | None:
    """``filename`` of a model folder, or of a hub name's cached snapshot (``None``: not there)."""
    if Path(name_or_path).is_dir():
        candidate = Path(name_or_path) / filename
        return candidate if candidate.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name_or_path, filename)
    except ValueError:  # not a valid repository name either: transformers will say it is missing
        return None
    return Path(cached) if isinstance(cached, str) else None


def _custom_code_file(name_or_path: str) -> Path | None:
    """The file in which the model ``name_or_path`` asks for its own code (an ``auto_map``), if
    any; a file that is not a JSON object asks for nothing (transformers then reports it)."""
    for filename in _CODE_MAPS:
        path = _local_file(name_or_path, filename)
        if path is None:
            continue
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(settings, dict) and settings.get("auto_map"):
            return path
    return None


def refuse_custom_code(name_or_path: str) -> None:
    """Raise :class:`~persona_rag.errors.DataError`, naming the file, if the model ``name_or_path``
    asks for its own code: :func:`load_pretrained` does, and a loaded selector or program calls it
    at once, before the model is needed and minutes of work have been done."""
    path = _custom_code_file(name_or_path)
    if path is not None:
        raise DataError(
            "this model asks to run its own Python code (auto_map), which persona-rag never runs; "
            "use a model that standard transformers classes load",
            file=str(path),
        )


def load_pretrained(loader: Any, name_or_path: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(name_or_path, **kwargs)`` with ``trust_remote_code=False``.

    Args:
        loader: a transformers Auto class (``AutoModel``, ``AutoTokenizer``, ...).
        name_or_path: a local folder or a Hugging Face hub name.
        kwargs: passed on (``dtype``, ``gguf_file``, ``truncation_side``, ...).

    Raises:
        DataError: the model needs its own code; the message names the file that asks for it. A
            hub model not cached yet is checked once transformers has fetched its configuration.
    """
    refuse_custom_code(name_or_path)
    try:
        return loader.from_pretrained(name_or_path, trust_remote_code=False, **kwargs)
    except ValueError:
        refuse_custom_code(name_or_path)  # a hub model whose files arrived during the call
        raise
