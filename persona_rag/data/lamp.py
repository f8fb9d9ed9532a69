"""Read LaMP-format task directories into records and ``dspy.Example`` objects."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
from pydantic import BaseModel, TypeAdapter, ValidationError

from persona_rag.data.records import OutputsFile, Question
from persona_rag.errors import DataError
from persona_rag.tasks import TaskSpec, get_task

__all__ = ["SPLITS", "LampSplit", "load_lamp", "questions_path", "read_questions"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
_QUESTIONS = TypeAdapter(list[Question])


def questions_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / f"{split}_questions.json"


def _outputs_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / f"{split}_outputs.json"


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise DataError("file not found", file=str(path)) from None
    except json.JSONDecodeError as error:
        raise DataError(
            f"malformed JSON at line {error.lineno} column {error.colno}: {error.msg}", file=str(path)
        ) from None
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text: {error}", file=str(path)) from None


def _validation_error(path: Path, raw: Any, error: ValidationError, noun: str) -> DataError:
    """Name the question (or gold), profile item and field of the first validation failure."""
    first = error.errors()[0]
    node, described, item_id, field = raw, [], None, None
    for step in first["loc"]:
        if isinstance(step, int):
            node = node[step] if isinstance(node, list) and step < len(node) else None
            ident = node.get("id") if isinstance(node, dict) else None
            kind = "profile item" if described else noun
            described.append(f"{kind} {ident!r}" if ident is not None else f"{kind} #{step}")
            item_id = str(ident) if ident is not None else item_id
        else:
            field = str(step)
            node = node.get(step) if isinstance(node, dict) else None
    where = ", ".join(described) or "top level"
    return DataError(
        f"{where}, field {field!r}: {first['msg']}", file=str(path), item_id=item_id, field=field
    )


def _parse(path: Path, model: TypeAdapter | type[BaseModel], noun: str) -> Any:
    raw = _read_json(path)
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(raw)
        return model.model_validate(raw)
    except ValidationError as error:
        raise _validation_error(path, raw, error, noun) from None


def read_questions(path: str | Path, task: TaskSpec | None = None) -> list[Question]:
    """Parse a questions file; with ``task``, also check each profile's task fields and ids."""
    path = Path(path)
    questions = _parse(path, _QUESTIONS, "question")
    seen: set[str] = set()
    for question in questions:
        if question.id in seen:
            raise DataError(
                f"duplicate question id {question.id!r}", file=str(path), item_id=question.id, field="id"
            )
        seen.add(question.id)
        if task is not None:
            try:
                task.documents(
                    [item.model_dump() for item in question.profile], where=f"question {question.id!r}"
                )
            except DataError as error:
                raise error.in_file(str(path)) from None
    return questions


def _detect_task(data_dir: Path, split: str) -> TaskSpec:
    for candidate in (split, *[s for s in SPLITS if s != split]):
        path = _outputs_path(data_dir, candidate)
        if path.exists():
            return get_task(_parse(path, OutputsFile, "gold").task)
    raise DataError(
        f"no *_outputs.json in {data_dir} names the task; pass task=... (e.g. 'LaMP-3')", file=str(data_dir)
    )


@dataclass
class LampSplit:
    """One split of a LaMP-format task directory.

    Attributes:
        task: the task spec (from the outputs file, or given).
        split: ``train``, ``dev``, ``test`` or any other split name present.
        questions: the parsed questions.
        golds: question id -> output, or ``None`` for a split without outputs (test sets).
        path: the questions file.
    """

    task: TaskSpec
    split: str
    questions: list[Question]
    golds: dict[str, str] | None
    path: Path

    def __len__(self) -> int:
        return len(self.questions)

    def __iter__(self) -> Iterator[Question]:
        return iter(self.questions)

    def examples(self) -> list[dspy.Example]:
        """``dspy.Example(id, input, profile, user_id -> output)``, inputs marked as such.

        ``profile`` holds plain dicts; test splits have no ``output`` field.
        """
        examples = []
        for question in self.questions:
            fields: dict[str, Any] = {
                "id": question.id,
                "input": question.input,
                "profile": [item.model_dump(exclude_none=True) for item in question.profile],
                "user_id": question.user_id,
            }
            if self.golds is not None:
                fields["output"] = self.golds[question.id]
            examples.append(dspy.Example(**fields).with_inputs("input", "profile", "user_id"))
        return examples


def load_lamp(
    data_dir: str | Path, split: str = "dev", *, task: str | TaskSpec | None = None, limit: int | None = None
) -> LampSplit:
    """Load ``{split}_questions.json`` (+ ``{split}_outputs.json`` when present) from ``data_dir``.

    The task comes from ``task`` or else the outputs file's ``"task"`` field (a sibling split's
    outputs file names it for test sets). Every profile is checked against the task's fields.

    Args:
        data_dir: directory holding the LaMP files.
        split: which split to read.
        task: task name or spec; overrides the outputs file.
        limit: keep only the first ``limit`` questions.

    Raises:
        DataError: naming file, question/item id and field for malformed or inconsistent data.
        UnknownTaskError: for a task name that is not registered.
    """
    data_dir = Path(data_dir)
    spec = get_task(task) if task is not None else _detect_task(data_dir, split)
    path = questions_path(data_dir, split)
    questions = read_questions(path, spec)
    if limit is not None:
        questions = questions[:limit]
    golds = None
    outputs = _outputs_path(data_dir, split)
    if outputs.exists():
        parsed = _parse(outputs, OutputsFile, "gold")
        if task is not None and get_task(parsed.task) is not spec:
            logger.warning("%s says task %s; using %s as asked", outputs, parsed.task, spec.name)
        golds = {gold.id: gold.output for gold in parsed.golds}
        missing = [q.id for q in questions if q.id not in golds]
        if missing:
            raise DataError(
                f"no gold output for question(s) {', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}",
                file=str(outputs),
                item_id=missing[0],
                field="output",
            )
    return LampSplit(task=spec, split=split, questions=questions, golds=golds, path=path)
