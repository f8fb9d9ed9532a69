"""Users' profiles in Chroma, embedded by default, a Chroma server by URL. One module per concept:

- :mod:`~persona_rag.store.profiles`: :class:`ProfileStore`, one collection per user, written by
  upsert and read as one question may see it.
- :mod:`~persona_rag.store.chroma`: opening the embedded store or a server, and what a failure means.
- :mod:`~persona_rag.store.fingerprint`: :func:`encoder_fingerprint`, which encoder made a vector.

The store depends on :mod:`persona_rag.retrievers` (it returns their results), never the reverse.
"""

from __future__ import annotations

from persona_rag.store.chroma import TOKEN_ENV
from persona_rag.store.fingerprint import encoder_fingerprint
from persona_rag.store.profiles import NAMESPACE_RULE, ProfileStore

__all__ = ["NAMESPACE_RULE", "TOKEN_ENV", "ProfileStore", "encoder_fingerprint"]
