"""Opening Chroma: the embedded store on disk or a Chroma server by URL, and what a failure means.

Every Chroma failure becomes a :class:`~persona_rag.errors.StoreError` that names the store, so a
server that went away is never read as an empty profile, and a server that refuses the client is
diagnosed in words that say what to do (never with the token).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from persona_rag.errors import ConfigError, PersonaRAGError, StoreError

__all__ = ["OPEN_LOCK", "OPEN_TIMEOUT_S", "TOKEN_ENV", "chroma_errors", "connect"]

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

TOKEN_ENV = "PERSONA_RAG_CHROMA_TOKEN"
"""Environment variable with the bearer token for a Chroma server (read from the environment only:
a command-line flag would show in ``ps`` and shell history)."""

_TOKEN_PROVIDER = "chromadb.auth.token_authn.TokenAuthClientProvider"
OPEN_LOCK = ".persona-rag-open.lock"
"""File inside an embedded store that serialises opening it across processes."""
OPEN_TIMEOUT_S = 300


@contextmanager
def chroma_errors(location: str, action: str) -> Iterator[None]:
    """Any Chroma failure (server gone, disk full, refused token) is a :class:`StoreError`
    naming the store (``location``): never mistaken for an empty profile."""
    try:
        yield
    except PersonaRAGError:
        raise
    except Exception as error:
        raise StoreError(f"{location}: {action}: {type(error).__name__}: {error}") from error


def connect(path: str | Path | None, url: str | None, location: str) -> Any:
    """A Chroma client: the server at ``url`` when given (with the bearer token of
    ``$PERSONA_RAG_CHROMA_TOKEN``), else the embedded store in ``path``, opened by one process at a
    time. ``location`` names the store in errors."""
    import chromadb
    from chromadb.config import Settings

    if not url:
        if path is None:
            raise ConfigError("give path= for the embedded store or url= for a Chroma server")
        from filelock import FileLock, Timeout

        # Chroma creates its tables when a store is first opened, without a cross-process
        # lock: processes opening a new store together fail ("table collections already
        # exists", "database is locked"). One opener at a time; reads and writes after that
        # are Chroma's own business.
        lock = FileLock(str(Path(path) / OPEN_LOCK), timeout=OPEN_TIMEOUT_S)
        with chroma_errors(location, "opening the embedded store"):
            Path(path).mkdir(parents=True, exist_ok=True)
            try:
                with lock:
                    return chromadb.PersistentClient(
                        path=str(path), settings=Settings(anonymized_telemetry=False)
                    )
            except Timeout:
                raise StoreError(
                    f"{location}: waited {OPEN_TIMEOUT_S} s for another process to finish "
                    f"opening this store (lock file {OPEN_LOCK})"
                ) from None
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"not a Chroma server URL: {url!r} (expected http://host:port)")
    token = os.environ.get(TOKEN_ENV)
    auth = {"chroma_client_auth_provider": _TOKEN_PROVIDER, "chroma_client_auth_credentials": token}
    settings = Settings(anonymized_telemetry=False, **(auth if token else {}))
    try:
        return chromadb.HttpClient(
            host=parsed.hostname,
            port=parsed.port or 8000,
            ssl=parsed.scheme == "https",
            settings=settings,
        )
    except Exception as error:
        raise StoreError(f"cannot use the Chroma server {url}: {_diagnose(url, token, error)}") from error


def _diagnose(url: str, token: str | None, error: BaseException) -> str:
    """Why a Chroma server could not be used, in words that say what to do (never the token)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/api/v2/tenants/default_tenant", headers=headers, timeout=5)
    except httpx.HTTPError:
        return f"nothing answers there ({error}); start it with `chroma run` or fix the URL"
    if response.status_code in (401, 403):
        if token:
            return f"HTTP {response.status_code}: the server refused the token in ${TOKEN_ENV}"
        return f"HTTP {response.status_code}: the server wants a token; set ${TOKEN_ENV}"
    return f"{type(error).__name__}: {error}"
