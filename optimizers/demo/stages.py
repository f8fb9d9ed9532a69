"""The demo's stage cache: every trained stage (the reader, ROPG-KD, RSPG-Post) runs through it.

A stage is keyed by the content of what it is made from, and a finished stage with the same key is
reused, so a second demo (or an example on the demo's data) only evaluates. One module holds the
rule, so no stage can key itself differently from the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from persona_rag.fingerprint import directory_fingerprint, stable_hash

__all__ = ["encoder_key", "examples_key", "run_stage", "stage_key", "timed"]


def stage_key(*parts: Any) -> str:
    """A stage's key: the content hash of what it is made from (models by their files' content,
    questions by their text and profiles, settings without the folders they write to), so a
    renamed or moved output folder reuses its stages and a changed input retrains."""
    return stable_hash(parts)[:16]


def encoder_key(encoder: str) -> str:
    """An encoder by content when its files are local (the packaged default, a checkpoint), else
    by its hub name."""
    from persona_rag.encoders import resolve_encoder

    location = resolve_encoder(encoder)
    return directory_fingerprint(location) if Path(location).is_dir() else encoder


def examples_key(examples: Sequence[Any]) -> str:
    """Questions by content: id, input, gold and the whole profile."""
    fields = ("id", "input", "output", "profile", "user_id")
    return stage_key([{name: ex.get(name) for name in fields} for ex in examples])


def run_stage(directory: Path, key: str, train: Callable[[], None]) -> bool:
    """Run ``train`` unless ``directory`` holds a finished stage made from the same ``key``.

    Returns whether it trained. The key file is written after the stage finished, so an
    interrupted stage trains again (and its trainer resumes from its own checkpoints).
    """
    from persona_rag.io import atomic_write_json

    marker = directory / "demo_stage.json"
    if marker.exists() and json.loads(marker.read_text()).get("key") == key and (directory / "best").exists():
        return False
    train()
    atomic_write_json(marker, {"key": key})
    return True


@contextmanager
def timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall time of the ``with`` block to ``seconds[stage]``: where a run's minutes went."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start
