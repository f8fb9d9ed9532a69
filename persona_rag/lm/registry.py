"""One loaded copy of each local model (and precision) per process, shared by every generator and
engine.

A 135M model is ~0.5 GB in float32, so programs, engines and optimizers that name the same model
at the same precision share one instance. Models being fine-tuned are registered here by
:meth:`LocalLM.wrap`, so ``local_lm(name)`` and saved engines resolve to the weights in memory.

The registry knows a model only through :class:`SharedModel` (what it reads to tell a stale copy
from a current one) and is handed the loader by :func:`persona_rag.lm.local.shared_local_lm`: the
model class imports the registry to register wrapped models, and the registry never imports the
model class back, so the two modules form no import cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from persona_rag.defaults import DEFAULT_LM
from persona_rag.lm.loading import files_fingerprint, resolve_model

__all__ = [
    "SharedModel",
    "model_fingerprint",
    "register_local_lm",
    "registered_local_lm",
    "release_local_lm",
    "shared_model",
]


class SharedModel(Protocol):
    """What the registry reads of a loaded model (:class:`~persona_rag.lm.local.LocalLM` is one)."""

    dtype: str
    path: str | None

    @property
    def in_memory(self) -> bool: ...

    @property
    def files_fingerprint(self) -> str: ...


Model = TypeVar("Model", bound=SharedModel)

_SHARED: dict[tuple[str, str], SharedModel] = {}
_SHARED_LOCK = threading.Lock()


def register_local_lm(name: str, lm: SharedModel) -> None:
    """Serve ``lm`` for ``name`` at its precision in this process (replacing any copy loaded from
    files)."""
    with _SHARED_LOCK:
        _SHARED[(name, lm.dtype)] = lm


def registered_local_lm(name: str, dtype: str = "float32") -> SharedModel | None:
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


def shared_model(model: str, dtype: str, load: Callable[[], Model]) -> Model:
    """The one copy of ``model`` at ``dtype`` in this process, made by ``load()`` when there is none.

    A copy whose files changed on disk since it was loaded (a checkpoint retrained in place) is
    loaded again, so the weights in use always match the files' fingerprint.
    """
    with _SHARED_LOCK:
        lm = _SHARED.get((model, dtype))
        if lm is None or (lm.path is not None and lm.files_fingerprint != files_fingerprint(lm.path)):
            lm = _SHARED[(model, dtype)] = load()
        return lm  # type: ignore[return-value]  # stored by this loader or by a wrap() of its class


def release_local_lm(model: str) -> None:
    """Forget the shared instances of ``model``, at every precision (after its weights on disk
    changed)."""
    with _SHARED_LOCK:
        for key in [key for key in _SHARED if key[0] == model]:
            del _SHARED[key]
