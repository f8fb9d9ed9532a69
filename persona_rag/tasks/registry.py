"""The task registry: every name and alias :func:`get_task`, the data loader and the CLI accept."""

from __future__ import annotations

import re

from persona_rag.errors import ConfigError, UnknownTaskError
from persona_rag.tasks.spec import TaskSpec

__all__ = ["TASKS", "get_task", "register_task"]

TASKS: dict[str, TaskSpec] = {}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def register_task(spec: TaskSpec, *, overwrite: bool = False) -> TaskSpec:
    """Make ``spec`` available to :func:`get_task`, the data loader and the CLI by its names."""
    for name in (spec.name, *spec.aliases):
        key = _key(name)
        if key in TASKS and TASKS[key] is not spec and not overwrite:
            raise ConfigError(f"task name {name!r} is already registered (pass overwrite=True to replace it)")
        TASKS[key] = spec
    return spec


def get_task(task: str | TaskSpec) -> TaskSpec:
    """The :class:`TaskSpec` for a name such as ``"LaMP-3"``, ``"LaMP_3"`` or ``"lamp3"``."""
    if isinstance(task, TaskSpec):
        return task
    spec = TASKS.get(_key(str(task)))
    if spec is None:
        known = sorted({s.name for s in TASKS.values()})
        raise UnknownTaskError(
            f"unknown task {task!r}; known tasks: {', '.join(known)} (or register_task(...))"
        )
    return spec
