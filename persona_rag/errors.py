"""Errors that name what went wrong and where (file, item id, field), so bad input is fixable."""

from __future__ import annotations

__all__ = [
    "CacheError",
    "ConfigError",
    "DataError",
    "DownloadError",
    "GenerationError",
    "PersonaRAGError",
    "StoreError",
    "UnknownTaskError",
]


class PersonaRAGError(Exception):
    """Base class of the library's own errors."""


class DataError(PersonaRAGError, ValueError):
    """Malformed input data.

    Attributes:
        file: the file being read, when known.
        item_id: the question or profile item at fault, when known.
        field: the missing or mistyped field, when known.
    """

    def __init__(
        self, message: str, *, file: str | None = None, item_id: str | None = None, field: str | None = None
    ) -> None:
        if file is not None and not message.startswith(str(file)):
            message = f"{file}: {message}"
        super().__init__(message)
        self.file = file
        self.item_id = item_id
        self.field = field

    def in_file(self, file: str) -> DataError:
        """The same error, located in ``file``."""
        return DataError(str(self), file=file, item_id=self.item_id, field=self.field)


class ConfigError(PersonaRAGError, ValueError):
    """Settings that cannot work with this model or data; the message says which option to change."""


class CacheError(PersonaRAGError, RuntimeError):
    """A cache file could not be read or written; the message names the file and what to do."""


class UnknownTaskError(PersonaRAGError, KeyError):
    """A task name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DownloadError(PersonaRAGError, OSError):
    """The official LaMP files could not be fetched (offline, moved, or a partial transfer)."""


class GenerationError(PersonaRAGError, RuntimeError):
    """An LLM call failed or timed out; names the example it was for."""


class StoreError(PersonaRAGError, RuntimeError):
    """The profile store could not be read or written."""
