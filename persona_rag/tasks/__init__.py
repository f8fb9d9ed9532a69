"""Task specifications: everything that differs between LaMP tasks, in one declarative object.

A :class:`TaskSpec` says how to read a task's inputs and profiles, how to build the personalised
prompt and how to parse and score an answer. The LaMP tasks are registered on import; a user
declares a new task by building a ``TaskSpec`` and calling :func:`register_task`, without editing
the library. One module per concept:

- :mod:`~persona_rag.tasks.spec`: the :class:`TaskSpec` model (fields, checks, parsing, metrics).
- :mod:`~persona_rag.tasks.truncation`: the prompt within a token budget, and the tokenizers.
- :mod:`~persona_rag.tasks.labels`: which label a free answer names.
- :mod:`~persona_rag.tasks.registry`: the names :func:`get_task` knows.
- :mod:`~persona_rag.tasks.lamp`: the LaMP task definitions.
"""

from __future__ import annotations

from persona_rag.tasks.lamp import LAMP_TASKS, MOVIE_TAGS, NEWS_CATEGORIES
from persona_rag.tasks.registry import TASKS, get_task, register_task
from persona_rag.tasks.spec import PARSING_NOTES, Document, TaskSpec
from persona_rag.tasks.truncation import ENTRY_SEPARATOR, ApproxTokenizer, HFTokenizer, Tokenizer

__all__ = [
    "ENTRY_SEPARATOR",
    "LAMP_TASKS",
    "MOVIE_TAGS",
    "NEWS_CATEGORIES",
    "PARSING_NOTES",
    "TASKS",
    "ApproxTokenizer",
    "Document",
    "HFTokenizer",
    "TaskSpec",
    "Tokenizer",
    "get_task",
    "register_task",
]
