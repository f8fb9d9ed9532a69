"""persona-rag: personalise LLMs through retrieval augmentation, with retrieval optimised by the
LLM's own metric (Salemi et al., SIGIR 2024) on LaMP, as composable DSPy modules.

Names are imported on first use (PEP 562): ``import persona_rag`` and ``persona-rag --help`` stay
fast, and torch, transformers and dspy load only when a model or module is asked for.
"""

from __future__ import annotations

from persona_rag.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "persona_rag.data": ("download_lamp", "load_lamp", "make_sample_task"),
    "persona_rag.encoders": ("TextEncoder",),
    "persona_rag.errors": (
        "CacheError",
        "ConfigError",
        "DataError",
        "DownloadError",
        "GenerationError",
        "StoreError",
        "UnknownTaskError",
    ),
    "persona_rag.generator": ("Generator", "PromptAdapter"),
    "persona_rag.lm": ("LocalEngine", "LocalLM", "local_lm"),
    "persona_rag.program": ("PersonalizedRAG",),
    "persona_rag.retrievers": (
        "BM25Retriever",
        "DenseRetriever",
        "NoRetriever",
        "RandomRetriever",
        "RecencyRetriever",
        "RetrievalResult",
        "Retriever",
        "make_retriever",
    ),
    "persona_rag.selector": ("Selection", "Selector"),
    "persona_rag.store": ("ProfileStore",),
    "persona_rag.tasks": ("TaskSpec", "get_task", "register_task"),
}

__all__ = [
    "BM25Retriever",
    "CacheError",
    "ConfigError",
    "DataError",
    "DenseRetriever",
    "DownloadError",
    "GenerationError",
    "Generator",
    "LocalEngine",
    "LocalLM",
    "NoRetriever",
    "PersonalizedRAG",
    "ProfileStore",
    "PromptAdapter",
    "RandomRetriever",
    "RecencyRetriever",
    "RetrievalResult",
    "Retriever",
    "Selection",
    "Selector",
    "StoreError",
    "TaskSpec",
    "TextEncoder",
    "UnknownTaskError",
    "download_lamp",
    "get_task",
    "load_lamp",
    "local_lm",
    "make_retriever",
    "make_sample_task",
    "register_task",
]

__getattr__, __dir__ = lazy_exports("persona_rag", _EXPORTS, globals())
