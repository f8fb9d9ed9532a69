"""Errors that name what went wrong and where (file, item id, field), so bad input is fixable.

Every failure a user can act on is a :class:`PersonaRAGError`: the command line prints it as one
line and exits with status 2, where any other exception is a bug and keeps its traceback. Each
subclass also derives from the standard exception that describes it (``ValueError`` for bad
settings and data, ``OSError`` for downloads, ...), so code that catches those keeps working.

The ``require_*`` checks are what configuration dataclasses call in ``__post_init__``: a setting
that cannot work is refused when the object is built, naming the class and the field, instead of
surfacing as a division by zero or an empty loop minutes into a run.
"""

from __future__ import annotations

import math
from collections.abc import Collection

__all__ = [
    "CacheError",
    "ConfigError",
    "DataError",
    "DownloadError",
    "GenerationError",
    "NoSpaceError",
    "PersonaRAGError",
    "ProgramError",
    "ServerError",
    "StateError",
    "StoreError",
    "UnknownTaskError",
    "require_at_least",
    "require_fraction",
    "require_one_of",
    "require_positive",
]


class PersonaRAGError(Exception):
    """Base class of the library's own errors: what a user can fix, reported without a traceback."""


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


class ProgramError(PersonaRAGError, TypeError):
    """A DSPy program without the part an optimizer or command works on (a dense retriever to tune,
    a selector to train, exactly one PersonalizedRAG to find)."""


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


def _refuse(config: object, name: str, expected: str) -> ConfigError:
    value = getattr(config, name)
    return ConfigError(f"{type(config).__name__}: {name}={value!r}; expected {expected}")


def require_at_least(config: object, minimum: float, *names: str) -> None:
    """Refuse any of the fields ``names`` of ``config`` below ``minimum`` (``None`` is left to
    mean "unset" wherever a field's type allows it).

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Sizes:
    ...     epochs: int = 1
    >>> require_at_least(Sizes(epochs=0), 1, "epochs")
    Traceback (most recent call last):
    persona_rag.errors.ConfigError: Sizes: epochs=0; expected a number of at least 1
    """
    for name in names:
        value = getattr(config, name)
        if value is not None and not value >= minimum:
            raise _refuse(config, name, f"a number of at least {minimum}")


def require_positive(config: object, *names: str) -> None:
    """Refuse any of the fields ``names`` of ``config`` that is not a finite number above 0
    (learning rates, temperatures, clipping norms); ``None`` passes as "unset"."""
    for name in names:
        value = getattr(config, name)
        if value is not None and not 0 < value < math.inf:
            raise _refuse(config, name, "a finite number above 0")


def require_fraction(config: object, *names: str) -> None:
    """Refuse any of the fields ``names`` of ``config`` outside [0, 1) (shares of a run)."""
    for name in names:
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise _refuse(config, name, "a fraction in [0, 1)")


def require_one_of(config: object, name: str, choices: Collection[object]) -> None:
    """Refuse the field ``name`` of ``config`` unless it is one of ``choices``."""
    if getattr(config, name) not in choices:
        raise _refuse(config, name, f"one of {', '.join(map(str, choices))}")
