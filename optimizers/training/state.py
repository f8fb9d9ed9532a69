"""The resume state of a training run: what lets an interrupted run continue where it stopped.

The state (``state/``, replaced atomically as a whole) loads without running code: tensors
(weights, optimizer moments, torch's RNG) in ``trainer.pt`` read with
``torch.load(weights_only=True)``, everything else (progress, history, scheduler, Python's RNG) in
``trainer.json``. A finished run keeps ``trainer.json`` alone, so a rerun returns at once without
gigabytes of optimizer state left on disk. It records the run's fingerprint (the settings that
shape the result, a hash of the training items, and the base model's fingerprint): a run started
into a folder that holds a different run stops with a clear error instead of returning the old
model, unless ``resume=False`` (``--overwrite``) asks to start fresh.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from persona_rag.errors import StateError
from persona_rag.io import atomic_directory, atomic_write_json

__all__ = ["STATE_FORMAT", "read_state", "restore_state", "write_state"]

STATE_FORMAT = 1  # of state/trainer.json; a pickled trainer.pt alone (before) is never loaded
_FRESH = "Start fresh with --overwrite (resume=False), or use another output folder"


def write_state(
    directory: Path,
    *,
    module: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    run: dict[str, Any],
    progress: dict[str, Any],
    finished: bool,
) -> None:
    """Write the state of ``run`` into ``directory``. A finished run keeps ``trainer.json`` alone:
    a rerun only needs to know there is nothing left to train, and the weights with Adam's two
    moments are three times the model on disk (4 GB for a 360M reader) that nothing would read
    again."""
    version, internal, gauss = random.getstate()
    with atomic_directory(directory) as temporary:  # both files or neither
        # Streamed into the new folder: serialised in memory first (and copied out of the
        # buffer), the weights and Adam moments took three times their size at once.
        if not finished:
            torch.save(
                {
                    "model": module.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                },
                temporary / "trainer.pt",
            )
        atomic_write_json(
            temporary / "trainer.json",
            {
                "format": STATE_FORMAT,
                "run": run,
                "progress": progress,
                "scheduler": scheduler.state_dict(),
                "python_rng": [version, list(internal), gauss],
                "finished": finished,
            },
        )


def read_state(directory: Path, run: dict[str, Any]) -> dict[str, Any]:
    """``trainer.json``, checked to belong to ``run`` before anything is loaded."""
    path = directory / "trainer.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise StateError(
            f"{path}: unreadable resume state ({error}); a state written by an older persona-rag "
            f"(one pickled trainer.pt) is never loaded, as unpickling can run code. {_FRESH}"
        ) from error
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise StateError(f"{path}: not a persona-rag resume state (format {STATE_FORMAT}). {_FRESH}")
    changed = _differences(state.get("run") or {}, run)
    if changed:
        raise StateError(
            f"{path}: this folder holds another run (it differs in {', '.join(changed)}); resuming it "
            f"would return that run's model. {_FRESH}"
        )
    return state


def restore_state(
    directory: Path, state: dict[str, Any], *, module: torch.nn.Module, optimizer: Any, scheduler: Any
) -> None:
    """Load the weights, the optimizer, the scheduler and both RNGs of ``state`` (read by
    :func:`read_state`) back, the tensors as plain tensors only."""
    tensors_file = directory / "trainer.pt"
    try:  # weights_only: tensors and plain containers, never code
        tensors = torch.load(tensors_file, map_location="cpu", weights_only=True)
        module.load_state_dict(tensors["model"])
        optimizer.load_state_dict(tensors["optimizer"])
        torch.set_rng_state(tensors["torch_rng"])
    except Exception as error:
        raise StateError(
            f"{tensors_file}: not a persona-rag resume state: it does not load as plain tensors "
            f"({type(error).__name__}), and it is never unpickled, as that can run code. Start fresh "
            "with --overwrite (resume=False) or use another output folder"
        ) from error
    scheduler.load_state_dict(state["scheduler"])
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two run fingerprints: config fields by name, then data and base."""
    old, new = saved.get("config") or {}, now["config"]
    changed = [f"config.{key}" for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    return changed + [part for part in ("data", "base") if saved.get(part) != now[part]]
