"""Read LaMP-format task directories into records and ``dspy.Example`` objects."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
from pydantic import BaseModel, ValidationError

from persona_rag.data.records import OutputsFile, Question
from persona_rag.errors import ConfigError, DataError, UnknownTaskError
from persona_rag.tasks import TaskSpec, get_task

__all__ = ["KNOWN_DEFECTS", "SPLITS", "LampSplit", "load_lamp", "questions_path", "read_questions"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")

# (task, split, question id) -> why: questions of the official LaMP files known to be malformed.
# :func:`load_lamp` skips such a question with a warning when (and only when) it fails validation,
# since a user cannot fix the official release; any other malformed question is an error.
KNOWN_DEFECTS: dict[tuple[str, str, str], str] = {
    ("LaMP-2", "dev", "110"): "a known defect of the official LaMP-2 (movie tagging) dev set",
}


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


def _validation_error(
    path: Path, raw: Any, error: ValidationError, noun: str, prefix: tuple[int, ...] = ()
) -> DataError:
    """Name the question (or gold), profile item and field of the first validation failure.

    ``prefix`` is the location of the validated part inside ``raw`` (a question's index).
    """
    first = error.errors()[0]
    node, described, item_id, field = raw, [], None, None
    for step in (*prefix, *first["loc"]):
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


def _parse(path: Path, model: type[BaseModel], noun: str) -> Any:
    raw = _read_json(path)
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise _validation_error(path, raw, error, noun) from None


def _validate_questions(path: Path, task: TaskSpec | None) -> tuple[list[Question], dict[str, DataError]]:
    """The well-formed questions of a file, and the error of each malformed one by its id.

    Errors that concern the file rather than one question (not a list, a duplicate id, a question
    without an id) are raised at once.
    """
    raw = _read_json(path)
    if not isinstance(raw, list):
        raise DataError(f"top level: expected a list of questions, got {type(raw).__name__}", file=str(path))
    questions: list[Question] = []
    errors: dict[str, DataError] = {}
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        ident = entry.get("id") if isinstance(entry, dict) else None
        try:
            question = Question.model_validate(entry)
        except ValidationError as error:
            located = _validation_error(path, raw, error, "question", prefix=(index,))
            if ident is None or str(ident) in seen:
                raise located from None
            seen.add(str(ident))
            errors[str(ident)] = located
            continue
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
                errors[question.id] = error.in_file(str(path))
                continue
        questions.append(question)
    return questions, errors


def _first(errors: dict[str, DataError]) -> DataError:
    """The first error, saying how many other questions are malformed too."""
    error = next(iter(errors.values()))
    if len(errors) == 1:
        return error
    return DataError(
        f"{error} (and {len(errors) - 1} more malformed question(s))",
        file=error.file,
        item_id=error.item_id,
        field=error.field,
    )


def read_questions(path: str | Path, task: TaskSpec | None = None) -> list[Question]:
    """Parse a questions file; with ``task``, also check each profile's task fields and ids."""
    questions, errors = _validate_questions(Path(path), task)
    if errors:
        raise _first(errors)
    return questions


def _check_golds(
    path: Path,
    parsed: OutputsFile,
    task: TaskSpec,
    questions: list[Question],
    errors: dict[str, DataError],
    questions_file: Path,
) -> dict[str, str]:
    """The golds of ``path`` by question id, checked against the questions and the task.

    A duplicate gold id or a gold without a question is an error of the file; a question without
    a gold or with a gold the task cannot score (a LaMP-3 gold of "banana" or "9", a LaMP-2 gold
    outside the input's tags) is added to ``errors`` under the question's id.
    """
    golds: dict[str, str] = {}
    for gold in parsed.golds:
        if gold.id in golds:
            raise DataError(f"duplicate gold id {gold.id!r}", file=str(path), item_id=gold.id, field="id")
        golds[gold.id] = gold.output
    orphans = [
        gold_id for gold_id in golds if gold_id not in errors and gold_id not in {q.id for q in questions}
    ]
    if orphans:
        raise DataError(
            f"gold {orphans[0]!r} has no question in {questions_file.name}"
            + (f" (nor have {len(orphans) - 1} more)" if len(orphans) > 1 else ""),
            file=str(path),
            item_id=orphans[0],
            field="id",
        )
    for question in questions:
        if question.id not in golds:
            errors[question.id] = DataError(
                f"no gold output for question {question.id!r}",
                file=str(path),
                item_id=question.id,
                field="output",
            )
            continue
        try:
            task.check_gold(golds[question.id], question.input, where=f"gold {question.id!r}")
        except DataError as error:
            errors[question.id] = DataError(
                str(error), file=str(path), item_id=question.id, field=error.field
            )
    return golds


def _skip_known_defects(task: TaskSpec, split: str, errors: dict[str, DataError]) -> set[str]:
    """The ids of malformed questions that are known defects of the official files, each with a
    warning; raise the first error of any other malformed question."""
    unknown = {qid: e for qid, e in errors.items() if (task.name, split, qid) not in KNOWN_DEFECTS}
    if unknown:
        raise _first(unknown)
    for qid, error in errors.items():
        logger.warning("skipping question %r (%s): %s", qid, KNOWN_DEFECTS[task.name, split, qid], error)
    return set(errors)


def _task_of(path: Path, outputs: OutputsFile) -> TaskSpec:
    """The task an outputs file names; an unknown name is an error naming that file."""
    try:
        return get_task(outputs.task)
    except UnknownTaskError as error:
        raise UnknownTaskError(f"{path}: {error}") from None


def _detect_task(data_dir: Path, split: str) -> TaskSpec:
    for candidate in (split, *[s for s in SPLITS if s != split]):
        path = _outputs_path(data_dir, candidate)
        if path.exists():
            return _task_of(path, _parse(path, OutputsFile, "gold"))
    raise DataError(
        f"no *_outputs.json in {data_dir} names the task; give it with --task on the command line "
        "(task=... in Python), e.g. LaMP-3",
        file=str(data_dir),
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

    def require_golds(self, purpose: str) -> LampSplit:
        """This split, or a :class:`DataError` saying that ``purpose`` (training, scoring) needs
        the gold outputs this split lacks, naming the file that would hold them."""
        if self.golds is None:
            missing = _outputs_path(self.path.parent, self.split)
            raise DataError(
                f"{purpose} needs the gold outputs, and there is no {missing.name}", file=str(missing)
            )
        return self

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
    outputs file names it for test sets). The whole of both files is checked before ``limit``
    applies: every profile against the task's fields (and LaMP-3 profile scores against the
    scale), every gold against the task (a rating on the scale, a label of the input), and golds
    and questions one to one. A question listed in :data:`KNOWN_DEFECTS` that fails these checks is
    skipped with a warning; any other failure raises.

    Args:
        data_dir: directory holding the LaMP files.
        split: which split to read.
        task: task name or spec; overrides the outputs file.
        limit: keep only the first ``limit`` questions (at least 1).

    Raises:
        DataError: naming file, question/item id and field for malformed or inconsistent data, or
            the folder, when it does not exist.
        UnknownTaskError: for a task name that is not registered (naming the outputs file that
            holds it).
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError("data folder not found", file=str(data_dir))
    spec = get_task(task) if task is not None else _detect_task(data_dir, split)
    path = questions_path(data_dir, split)
    questions, errors = _validate_questions(path, spec)
    golds = None
    outputs = _outputs_path(data_dir, split)
    if outputs.exists():
        parsed = _parse(outputs, OutputsFile, "gold")
        if task is not None and _task_of(outputs, parsed) is not spec:
            logger.warning("%s says task %s; using %s as asked", outputs, parsed.task, spec.name)
        golds = _check_golds(outputs, parsed, spec, questions, errors, path)
    if errors:
        skipped = _skip_known_defects(spec, split, errors)
        questions = [q for q in questions if q.id not in skipped]
    if not questions:
        raise DataError("the file holds no questions", file=str(path))
    if limit is not None:
        questions = questions[:limit]
    return LampSplit(task=spec, split=split, questions=questions, golds=golds, path=path)
