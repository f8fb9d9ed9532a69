"""An in-process Hugging Face causal LM, used in batches: :class:`LocalLM`.

The model itself is loaded here (weights from :mod:`persona_rag.lm.loading`) and identified by the
content of its files; what it computes comes from :mod:`persona_rag.lm.generation` (batched
generation) and :mod:`persona_rag.lm.scoring` (label scoring).
"""

from __future__ import annotations

import uuid
from typing import Any

import torch

from persona_rag.defaults import DEFAULT_LM
from persona_rag.fingerprint import public_settings
from persona_rag.lm.generation import BatchedGeneration
from persona_rag.lm.loading import check_dtype, files_fingerprint, resolve_model
from persona_rag.lm.registry import register_local_lm, shared_model
from persona_rag.lm.scoring import LabelScoring
from persona_rag.pretrained import load_pretrained

__all__ = ["LocalLM", "shared_local_lm"]


class LocalLM(BatchedGeneration, LabelScoring):
    """A Hugging Face causal LM held in this process, used in batches.

    Calls are serialised by a lock (one forward pass at a time uses all cores anyway), so one
    instance is safe to share between ``dspy.Evaluate`` threads.

    Args:
        model: ``SmolLM2-135M-Instruct`` (packaged, offline), a Hugging Face name or a local path.
        device: ``cpu``/``cuda``; default: CUDA when available.
        batch_size: prompts per forward pass.
        max_input_tokens: prompts are cut (from the left of the user turn) to this many tokens.
        chat: wrap prompts in the tokenizer's chat template (for instruction-tuned models).
        dtype: the weights' precision for inference: ``float32`` (the reference) or ``bfloat16``
            (2.8x faster label scoring on a CPU with AVX-512 BF16, same best label on 64 of 64
            sample prompts: benchmarks/README.md; and half the memory). Part of the fingerprint, so
            answers cached at one precision never stand in for the other.
    """

    def __init__(
        self,
        model: str = DEFAULT_LM,
        *,
        device: str | None = None,
        batch_size: int = 8,
        max_input_tokens: int = 1024,
        chat: bool | None = None,
        dtype: str = "float32",
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        check_dtype(dtype)
        path = resolve_model(model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        tokenizer = load_pretrained(AutoTokenizer, path)
        loaded = load_pretrained(AutoModelForCausalLM, path, dtype=getattr(torch, dtype)).to(device).eval()
        self._setup(
            model, loaded, tokenizer, batch_size=batch_size, max_input_tokens=max_input_tokens, chat=chat
        )
        self.path: str | None = path
        self._files: str | None = files_fingerprint(path)

    @classmethod
    def wrap(
        cls, model: Any, tokenizer: Any, *, name: str, batch_size: int = 8, max_input_tokens: int = 1024
    ) -> LocalLM:
        """A LocalLM over an already loaded model (e.g. one being fine-tuned), registered under
        ``name`` so that ``local_lm(name)`` and saved engines resolve to it in this process."""
        lm = cls.__new__(cls)
        lm._setup(name, model, tokenizer, batch_size=batch_size, max_input_tokens=max_input_tokens, chat=None)
        lm.path, lm._files = None, None
        register_local_lm(name, lm)
        return lm

    # --------------------------------------------------------------------------- identity
    @property
    def in_memory(self) -> bool:
        """Held only in memory (:meth:`wrap`): its weights may change between calls."""
        return self._files is None

    @property
    def files_fingerprint(self) -> str:
        """Content hash of the files the weights were loaded from; for an in-memory model a new
        random value on every read, so no cache ever answers for weights that may have moved."""
        return self._files or f"in-memory-{uuid.uuid4().hex}"

    def fingerprint(self) -> dict[str, Any]:
        """What this model's answers depend on besides the prompt: its weights and tokenizer (by
        content, not by folder name) and every plain setting (prompt cut, chat template, device,
        precision, and any scoring option a later version adds); the batch size only groups the
        work. float32, the reference precision, adds nothing, so caches from before the ``dtype``
        option stay valid."""
        settings = public_settings(self, exclude=frozenset({"name", "path", "batch_size"}))
        if settings.get("dtype") == "float32":
            del settings["dtype"]
        return {"files": self.files_fingerprint, **settings}


def shared_local_lm(model: str = DEFAULT_LM, dtype: str = "float32") -> LocalLM:
    """One loaded copy per model name and precision in this process (reloaded when its files
    changed on disk; :func:`~persona_rag.lm.registry.shared_model`)."""
    return shared_model(model, dtype, lambda: LocalLM(model, dtype=dtype))
