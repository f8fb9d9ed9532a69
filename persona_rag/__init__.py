"""persona-rag: personalise LLMs through retrieval augmentation, with retrieval optimised by the
LLM's own metric (Salemi et al., SIGIR 2024) on LaMP, as composable DSPy modules."""

from persona_rag.data import download_lamp, load_lamp, make_sample_task
from persona_rag.encoders import TextEncoder
from persona_rag.errors import (
    CacheError,
    ConfigError,
    DataError,
    DownloadError,
    GenerationError,
    StoreError,
    UnknownTaskError,
)
from persona_rag.generator import Generator, PromptAdapter
from persona_rag.lm import LocalEngine, LocalLM, local_lm
from persona_rag.program import PersonalizedRAG
from persona_rag.retrievers import (
    BM25Retriever,
    DenseRetriever,
    NoRetriever,
    RandomRetriever,
    RecencyRetriever,
    RetrievalResult,
    Retriever,
    make_retriever,
)
from persona_rag.selector import Selection, Selector
from persona_rag.store import ProfileStore
from persona_rag.tasks import TaskSpec, get_task, register_task

__version__ = "0.1.0"

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
