"""Errors that name what went wrong and where (file, item id, field), so bad input is fixable."""

from __future__ import annotations

__all__ = [
    "CacheError",
    "ConfigError",
    "DataError",
    "DownloadError",
    "GenerationError",
    "NoSpaceError",
    "PersonaRAGError",
    "ServerError",
    "StateError",
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


class NoSpaceError(PersonaRAGError, OSError):
    """A write failed because the file system is full. The message names the path, says that no
    space is left, and that what was committed before is kept: a full disk is not a corrupt file,
    and nothing should be deleted but what the user chooses to free space with."""


class GenerationError(PersonaRAGError, RuntimeError):
    """An LLM call failed or timed out; names the example it was for."""


class ServerError(PersonaRAGError, ConnectionError):
    """The LLM server cannot be reached even after the retries: the run stops with one line naming
    the server, since every further request would fail the same way (and an evaluation would
    otherwise score empty answers)."""


class StateError(PersonaRAGError, ValueError):
    """A saved program or run state that is not loaded as it is: loading it would run code, send
    requests (and an API key) to an endpoint the caller did not choose, or continue from other
    weights, data or settings than the caller's."""


class StoreError(PersonaRAGError, RuntimeError):
    """The profile store could not be read or written."""
