"""The in-process model inside DSPy: a dspy 3.4 engine and the ``dspy.LM`` built on it.

:class:`LocalEngine` plugs the model into DSPy 3.4 as ``dspy.LM("local/<name>@<content hash>",
engine=...)``, so ``dspy.Predict`` and every DSPy tool can call it, and DSPy's response cache is
keyed by what the model files hold rather than by their folder's name; bulk work (evaluation,
training feedback) calls :class:`~persona_rag.lm.LocalLM` directly in batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persona_rag.defaults import DEFAULT_LM
from persona_rag.errors import GenerationError
from persona_rag.lm.core import Message
from persona_rag.lm.loading import check_dtype
from persona_rag.lm.local import LocalLM, shared_local_lm
from persona_rag.lm.registry import model_fingerprint, registered_local_lm

__all__ = ["LocalEngine", "local_lm", "local_model_of"]


class LocalEngine:
    """DSPy 3.4 engine (``complete(Request) -> Response``) over a :class:`LocalLM`.

    The model loads lazily on the first call, so building a program does not cost a model load.
    ``fingerprint`` is the content hash of the model files that the ``dspy.LM``'s name (and so
    DSPy's response cache) was keyed by: if the files change afterwards, calls fail instead of
    answering with new weights under the old name.
    """

    def __init__(
        self, model: str = DEFAULT_LM, *, fingerprint: str | None = None, dtype: str = "float32"
    ) -> None:
        self.model = model
        self.fingerprint = fingerprint
        self.dtype = dtype

    @property
    def lm(self) -> LocalLM:
        lm = shared_local_lm(self.model, self.dtype)
        if self.fingerprint is not None and lm.files_fingerprint != self.fingerprint:
            raise GenerationError(
                f"the model files of {self.model} changed since this LM was built (fingerprint "
                f"{self.fingerprint[:12]} -> {lm.files_fingerprint[:12]}); "
                f"build a new local_lm({self.model!r})"
            )
        return lm

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message as LMMessage
        from dspy.lm15 import Response, TextPart, Usage

        messages: list[Message] = []
        if request.system is not None:
            system = (
                request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            )
            messages.append({"role": "system", "content": system})
        messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
        config = request.config
        [answer] = self.lm.generate(
            [messages], max_new_tokens=config.max_tokens or 32, temperature=config.temperature or 0.0
        )
        return Response(
            id=None,
            model=self.model,
            message=LMMessage.assistant([TextPart(answer.text)]),
            finish_reason="stop",
            usage=Usage(input_tokens=answer.input_tokens, output_tokens=answer.output_tokens),
        )

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        """The model is shared process-wide; nothing to release per engine."""

    def dump_state(self) -> dict[str, Any]:
        return {"model": self.model, "fingerprint": self.fingerprint, "dtype": self.dtype}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LocalEngine:
        dtype = str(state.get("dtype", "float32"))
        return cls(str(state["model"]), fingerprint=state.get("fingerprint"), dtype=dtype)


def local_lm(model: str = DEFAULT_LM, *, max_tokens: int = 32, dtype: str = "float32", **kwargs: Any) -> Any:
    """A ``dspy.LM`` backed by an in-process model: ``dspy.configure(lm=local_lm())``.

    Its name, ``local/<folder>@<content hash>`` (plus ``:bfloat16`` at that precision), keys
    DSPy's response cache by the model files' content, so two checkpoints in folders of the same
    name (or one retrained in place) never answer with each other's cached outputs; the request's
    ``max_tokens``, ``temperature`` and ``stop`` are part of DSPy's cache key already. A model held
    only in memory (being trained, see :meth:`LocalLM.wrap`) is not cached at all.
    """
    import dspy

    shared = registered_local_lm(model, check_dtype(dtype))
    if shared is not None and shared.in_memory:
        fingerprint, tag = None, "in-memory"
        kwargs.setdefault("cache", False)
    else:
        fingerprint = model_fingerprint(model, dtype)
        tag = fingerprint[:16]
    precision = "" if dtype == "float32" else f":{dtype}"
    return dspy.LM(
        f"local/{Path(model).name}@{tag}{precision}",
        engine=LocalEngine(model, fingerprint=fingerprint, dtype=dtype),
        max_tokens=max_tokens,
        temperature=0.0,
        **kwargs,
    )


def local_model_of(lm: Any) -> LocalLM | None:
    """The :class:`LocalLM` behind a ``dspy.LM`` built by :func:`local_lm`, else ``None``."""
    engine = getattr(lm, "engine", None)
    return engine.lm if isinstance(engine, LocalEngine) else None
