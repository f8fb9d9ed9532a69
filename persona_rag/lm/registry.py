"""One loaded copy of each local model (and precision) per process, shared by every generator and
engine.

A 135M model is ~0.5 GB in float32, so programs, engines and optimizers that name the same model
at the same precision share one instance. Models being fine-tuned are registered here by
:meth:`LocalLM.wrap`, so ``local_lm(name)`` and saved engines resolve to the weights in memory.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from persona_rag.defaults import DEFAULT_LM
from persona_rag.lm.loading import files_fingerprint, resolve_model

if TYPE_CHECKING:
    from persona_rag.lm.local import LocalLM

__all__ = [
    "model_fingerprint",
    "register_local_lm",
    "registered_local_lm",
    "release_local_lm",
    "shared_local_lm",
]

_SHARED: dict[tuple[str, str], LocalLM] = {}
_SHARED_LOCK = threading.Lock()


def register_local_lm(name: str, lm: LocalLM) -> None:
    """Serve ``lm`` for ``name`` at its precision in this process (replacing any copy loaded from
    files)."""
    with _SHARED_LOCK:
        _SHARED[(name, lm.dtype)] = lm


def registered_local_lm(name: str, dtype: str = "float32") -> LocalLM | None:
    """The instance this process holds for ``name`` at ``dtype``, without loading one."""
    with _SHARED_LOCK:
        return _SHARED.get((name, dtype))


def model_fingerprint(model: str = DEFAULT_LM, dtype: str = "float32") -> str:
    """The content fingerprint of ``model`` (a name or path) as :func:`shared_local_lm` serves it:
    the hash of its files, without loading it (in-memory models: see ``files_fingerprint``)."""
    shared = registered_local_lm(model, dtype)
    if shared is not None and shared.in_memory:
        return shared.files_fingerprint
    return files_fingerprint(resolve_model(model))


def shared_local_lm(model: str = DEFAULT_LM, dtype: str = "float32") -> LocalLM:
    """One loaded copy per model name and precision in this process.

    A copy whose files changed on disk since it was loaded (a checkpoint retrained in place) is
    loaded again, so the weights in use always match the files' fingerprint.
    """
    from persona_rag.lm.local import LocalLM  # it registers wrapped models here: imported on use

    with _SHARED_LOCK:
        lm = _SHARED.get((model, dtype))
        if lm is None or (lm.path is not None and lm.files_fingerprint != files_fingerprint(lm.path)):
            lm = _SHARED[(model, dtype)] = LocalLM(model, dtype=dtype)
        return lm


def release_local_lm(model: str) -> None:
    """Forget the shared instances of ``model``, at every precision (after its weights on disk
    changed)."""
    with _SHARED_LOCK:
        for key in [key for key in _SHARED if key[0] == model]:
            del _SHARED[key]
