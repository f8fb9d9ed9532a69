"""Command-line flags built from config dataclasses, and the configs built back from parsed flags.

A command's settings are declared once, in its config dataclass: each field's name, type, default
and help (``field(default=..., metadata=option(...))``) make its flag. A new field is then a new
flag with no second edit, and ``--help`` shows the default the config really has, where a
hand-kept copy of each default could drift from it. What a whole config must satisfy stays in its
``__post_init__`` (a one-line :class:`~persona_rag.errors.ConfigError`); a flag's ``type`` refuses,
as it is parsed and before any model loads, a value that is not one (``--epochs 0``).

>>> from dataclasses import dataclass, field
>>> @dataclass(kw_only=True)
... class Sizes:
...     epochs: int = field(default=3, metadata=option("passes over the data"))
...     shuffle: bool = field(default=True, metadata=option("shuffle every pass"))
>>> flags = ConfigFlags(Sizes)
>>> parser = argparse.ArgumentParser()
>>> flags.add_to(parser)
>>> Sizes(**flags.values(Sizes, parser.parse_args(["--epochs", "5", "--no-shuffle"])))
Sizes(epochs=5, shuffle=False)
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

__all__ = ["ConfigFlags", "option"]

# What a flag's value is read as when its field names no ``type`` (``str | Path`` is read as a Path).
_READABLE = (int, float, str, Path)


def option(
    help: str, *flags: str, type: Callable[[str], Any] | None = None, off: bool = False
) -> dict[str, Any]:
    """The metadata that makes a config field a flag.

    Args:
        help: what the flag does; the help appends the field's default.
        flags: the flag's names where they are not the field's own (``learning_rate`` ->
            ``--learning-rate``): a name command lines already use (``--lr``), or one clear of
            another option of the same command (``--train-batch-size``, as ``--batch-size`` is the
            generator's). The first names the parsed value.
        type: reads and checks a value as it is parsed (``positive_int``), instead of the field's
            type, so a bad value fails before anything loads.
        off: the field defaults to ``True`` and its one flag turns it off (``--overwrite`` sets
            ``resume=False``), where the pair ``--x``/``--no-x`` would take a name already in use.
    """
    return {"help": help, "flags": flags, "type": type, "off": off}


@dataclasses.dataclass(frozen=True)
class _Flag:
    """One field's flag: its names, its ``add_argument`` options, and the field's default."""

    names: tuple[str, ...]
    options: Mapping[str, Any]
    default: Any
    off: bool

    @property
    def dest(self) -> str:
        return self.names[0].lstrip("-").replace("-", "_")

    def value(self, args: argparse.Namespace) -> Any:
        parsed = getattr(args, self.dest)
        return not parsed if self.off else parsed


def _metadata(config: type, name: str) -> Mapping[str, Any]:
    """A field's flag metadata, from the nearest class that gives it: a subclass that only changes a
    default (``learning_rate: float = 5e-5``) keeps its base's help and names."""
    for base in config.__mro__:
        if dataclasses.is_dataclass(base):
            own = {field.name: field for field in dataclasses.fields(base)}.get(name)
            if own is not None and own.metadata:
                return own.metadata
    raise TypeError(
        f"{config.__name__}.{name} is no flag: give it field(metadata=option(...)), "
        "or leave it to the command (exclude)"
    )


def _readable(hint: Any) -> Any:
    """The type a flag reads, from a field's annotation: ``X | None`` is ``X`` (``None``, the unset
    value, is only ever a default), and ``str | Path`` is a Path."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return hint
    members = [member for member in typing.get_args(hint) if member is not types.NoneType]
    if Path in members:
        return Path
    return members[0] if len(members) == 1 else hint


def _flag(config: type, field: dataclasses.Field, hint: Any) -> _Flag:
    where = f"{config.__name__}.{field.name}"
    if field.default is dataclasses.MISSING:
        raise TypeError(f"{where} has no default for its flag to show")
    meta = _metadata(config, field.name)
    names = meta["flags"] or (f"--{field.name.replace('_', '-')}",)
    options: dict[str, Any] = {"help": meta["help"], "default": field.default}
    kind = _readable(hint)
    if meta["off"]:
        if field.default is not True or len(names) != 1:
            raise TypeError(f"{where}: an off flag is one name for a field that defaults to True")
        options |= {"action": "store_true", "default": False}
    elif meta["type"] is not None:
        options["type"] = meta["type"]
    elif kind is bool:
        options["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is typing.Literal:
        options["choices"] = typing.get_args(kind)
    elif kind in _READABLE:
        options["type"] = kind
    else:
        raise TypeError(f"{where}: no flag reads {hint}; give option(type=...) or leave it to the command")
    return _Flag(names=names, options=options, default=field.default, off=meta["off"])


class ConfigFlags:
    """The flags a command builds from its config classes, and the config values it reads back.

    A field that several classes share is one flag (``train`` offers ROPG-KD's and Set-PL's
    settings together), so they must share its default. ``exclude``: fields the command sets itself
    (an output folder named after ``--method``); ``include``: when given, the only fields that are
    flags. Built when a command module is imported, which the config classes allow: they load no
    model library.
    """

    def __init__(
        self, *configs: type, exclude: Collection[str] = (), include: Collection[str] | None = None
    ) -> None:
        fields = {field.name for config in configs for field in dataclasses.fields(config)}
        unknown = {*exclude, *(include or ())} - fields
        if unknown:  # a misspelt name would silently leave a field a flag, or no flag at all
            raise TypeError(f"no such config fields: {', '.join(sorted(unknown))}")
        self.flags: dict[str, _Flag] = {}
        for config in configs:
            hints = typing.get_type_hints(config)
            for field in dataclasses.fields(config):
                if field.name in exclude or (include is not None and field.name not in include):
                    continue
                if field.name not in self.flags:
                    self.flags[field.name] = _flag(config, field, hints[field.name])
                elif self.flags[field.name].default != field.default:
                    raise TypeError(
                        f"{config.__name__}.{field.name} defaults to {field.default!r}, another config "
                        f"of the same flag to {self.flags[field.name].default!r}: one help cannot show both"
                    )

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add the flags to a command's parser."""
        for flag in self.flags.values():
            parser.add_argument(*flag.names, dest=flag.dest, **flag.options)

    def values(self, config: type, args: argparse.Namespace) -> dict[str, Any]:
        """The fields of ``config`` that are flags, as parsed: with what the command sets itself,
        the arguments of ``config``."""
        fields = [field.name for field in dataclasses.fields(config)]
        return {name: self.flags[name].value(args) for name in fields if name in self.flags}
