"""The task specification: everything that differs between LaMP tasks, in one declarative object.

A :class:`TaskSpec` says how to read a task's inputs and profiles (query extraction, document text),
how to build the personalised prompt (per-entry template, combination, and the token-budget
truncation of :mod:`persona_rag.tasks.truncation`, as in the LaMP code), how to parse an answer and
how to score it (corpus metrics and the per-example Eval signal).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from persona_rag import metrics
from persona_rag.errors import ConfigError, DataError
from persona_rag.tasks.labels import label_union, match_label
from persona_rag.tasks.truncation import Combine, PromptBudget

__all__ = ["PARSING_NOTES", "Document", "Kind", "TaskSpec"]


@dataclass(frozen=True)
class Document:
    """A profile item as retrievers see it.

    Attributes:
        index: position of the item in the user's profile.
        id: the item's id (unique within a profile).
        text: the text that retrievers match against (task fields plus ``date: ...``).
        date: the item's date string, or ``None``.
        item: the raw profile item, used to build the prompt entry.
    """

    index: int
    id: str
    text: str
    date: str | None
    item: Mapping[str, Any] = field(repr=False, hash=False, compare=False)


Kind = Literal["classification", "rating", "generation"]


@dataclass(frozen=True, kw_only=True)
class TaskSpec(PromptBudget):
    """A task: its fields, templates, parsing and metrics.

    Attributes:
        name: canonical name, e.g. ``"LaMP-3"``.
        kind: ``classification`` (accuracy, macro-F1), ``rating`` (MAE, RMSE) or ``generation``
            (ROUGE-1, ROUGE-L). It decides parsing, metrics and the Eval signal.
        profile_fields: fields every profile item must have besides ``id`` (``date`` is optional).
        document_template: retrieval text of an item, e.g. ``"{title} {abstract}"``; ``date: ...`` is
            appended when the item has a date.
        entry_template: the per-profile-entry prompt (PPEP) of the LaMP paper.
        truncate_field: the entry field cut when the prompt is over its token budget.
        combine: ``"{entries}. {input}"``-style template or ``f(input, entries) -> prompt``.
        query_marker: the query is the input text after this marker; ``None``: after the first
            colon.
        query_fn: full override of query extraction.
        labels: the fixed label set of a classification task.
        labels_pattern: regex whose group 1 lists the labels inside the input (comma separated);
            it wins over ``labels`` when it matches, so datasets with their own tag lists work.
        rating_range: the scale of a rating task.
        rating_field: the profile field holding a past rating (LaMP-3's ``score``); it must be a
            number on ``rating_range``, since the prompt shows it to the model as an example answer.
        parsing: how answers are read and scored: ``"lamp"`` (LaMP's official evaluation, the
            default) or ``"lenient"`` (the label or number is looked for inside the answer; stemmed
            ROUGE). See :mod:`persona_rag.metrics`; ``dataclasses.replace(spec, parsing=...)`` switches.
        aliases: other names :func:`get_task` accepts (e.g. the ``"LaMP_3"`` of outputs files).
        description: one line for ``persona-rag`` listings.
    """

    name: str
    kind: Kind
    profile_fields: tuple[str, ...]
    document_template: str
    entry_template: str
    truncate_field: str | None = None
    combine: Combine = "{entries}. {input}"
    query_marker: str | None = None
    query_fn: Callable[[str], str] | None = None
    labels: tuple[str, ...] = ()
    labels_pattern: str | None = None
    rating_range: tuple[int, int] = (1, 5)
    rating_field: str | None = None
    parsing: metrics.Parsing = "lamp"
    aliases: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind == "classification" and not (self.labels or self.labels_pattern):
            raise ConfigError(f"task {self.name!r}: a classification task needs labels or labels_pattern")
        if self.truncate_field is not None and self.truncate_field not in self.profile_fields:
            raise ConfigError(
                f"task {self.name!r}: truncate_field {self.truncate_field!r} is not a profile field"
            )
        if self.rating_field is not None and self.rating_field not in self.profile_fields:
            raise ConfigError(
                f"task {self.name!r}: rating_field {self.rating_field!r} is not a profile field"
            )
        if self.parsing not in metrics.PARSINGS:
            raise ConfigError(
                f"task {self.name!r}: parsing must be one of {metrics.PARSINGS}, got {self.parsing!r}"
            )

    # ----------------------------------------------------------------- reading inputs and profiles
    def query(self, input: str) -> str:
        """φ_q(x): the non-template part of the input, used as the retrieval query."""
        if self.query_fn is not None:
            return self.query_fn(input)
        if self.query_marker is not None:
            position = input.find(self.query_marker)
            if position >= 0:
                return input[position + len(self.query_marker) :].strip()
        _, colon, rest = input.partition(":")
        return rest.strip() if colon else input.strip()

    def content_free(self, input: str) -> str:
        """The input with its content replaced by ``N/A``.

        This is the content-free probe of contextual calibration (Zhao et al., 2021): the model's
        label preferences on it measure its bias towards some labels, which calibration removes.
        """
        query = self.query(input)
        if query and query in input:
            return input.replace(query, "N/A")
        return re.sub(r'"[^"]*"', '"N/A"', input)  # a query built from several quoted spans (LaMP-1)

    def check_item(self, item: Mapping[str, Any], *, where: str = "profile") -> None:
        """Raise :class:`DataError` naming the item and field when a required field is missing."""
        item_id = item.get("id")
        if item_id is None or str(item_id) == "":
            raise DataError(f"{where}: profile item without an 'id' field", field="id")
        for name in self.profile_fields:
            value = item.get(name)
            if value is None:
                raise DataError(
                    f"{where}: profile item {item_id!r} lacks field {name!r} required by task {self.name}",
                    item_id=str(item_id),
                    field=name,
                )
            if not isinstance(value, str | int | float):
                raise DataError(
                    f"{where}: profile item {item_id!r} field {name!r} must be text, "
                    f"got {type(value).__name__}",
                    item_id=str(item_id),
                    field=name,
                )
            if name == self.rating_field and not self._on_scale(str(value)):
                low, high = self.rating_range
                raise DataError(
                    f"{where}: profile item {item_id!r} field {name!r} is {value!r}, not a rating "
                    f"from {low} to {high}",
                    item_id=str(item_id),
                    field=name,
                )

    def check_gold(self, output: str, input: str = "", *, where: str = "gold") -> None:
        """Raise :class:`DataError` when a gold output cannot be scored by this task.

        A rating must be a number on ``rating_range`` (a gold of "banana" would crash the metric
        after the model ran; "9" would be scored silently); a label must be one of the input's
        labels, exactly as LaMP's evaluation compares them (else no answer could ever be right); a
        text to generate must not be empty (ROUGE against nothing is 0 for every answer, and
        log p(gold) has no token to score).
        """
        if self.kind == "rating" and not self._on_scale(output):
            low, high = self.rating_range
            raise DataError(
                f"{where}: field 'output' is {output!r}, not a rating from {low} to {high}", field="output"
            )
        if self.kind == "generation" and not output.strip():
            raise DataError(
                f"{where}: field 'output' is empty, and a generated answer cannot be scored against nothing",
                field="output",
            )
        if self.kind == "classification":
            labels = self.labels_for(input)
            if output.strip() not in labels:
                raise DataError(
                    f"{where}: field 'output' is {output!r}, not one of the input's labels "
                    f"({', '.join(labels)})",
                    field="output",
                )

    def _on_scale(self, text: str) -> bool:
        value = metrics.lamp_rating(text)
        low, high = self.rating_range
        return value is not None and low <= value <= high

    def documents(self, profile: Sequence[Mapping[str, Any]], *, where: str = "profile") -> list[Document]:
        """Turn a profile into retrievable documents, checking fields and duplicate ids."""
        seen: set[str] = set()
        documents = []
        for index, item in enumerate(profile):
            self.check_item(item, where=where)
            item_id = str(item["id"])
            if item_id in seen:
                raise DataError(
                    f"{where}: duplicate profile item id {item_id!r}", item_id=item_id, field="id"
                )
            seen.add(item_id)
            text = self.document_template.format_map(_Fields(item))
            date = item.get("date")
            if date:
                text = f"{text} date: {date}"
            documents.append(Document(index=index, id=item_id, text=text, date=date, item=item))
        return documents

    def labels_for(self, input: str) -> tuple[str, ...]:
        """The allowed answers for this input (empty for rating and generation tasks)."""
        if self.kind == "rating":
            low, high = self.rating_range
            return tuple(str(v) for v in range(low, high + 1))
        if self.labels_pattern is not None:
            match = re.search(self.labels_pattern, input)
            if match:
                return tuple(label.strip() for label in match.group(1).split(",") if label.strip())
        return self.labels

    # ------------------------------------------------------------------------------ the prompt
    # (the budgeted prompt itself: PromptBudget.prompt)
    def entry(self, item: Mapping[str, Any]) -> str:
        """One profile entry rendered with the PPEP template."""
        return self.entry_template.format_map(_Fields(item))

    # ------------------------------------------------------------------- answers and metrics
    def parse(self, text: str, input: str = "") -> str:
        """Normalise a raw model answer according to :attr:`parsing`.

        ``lamp``: the stripped answer, nothing more (LaMP's evaluation reads the whole answer).
        ``lenient``: the label the answer mentions, or its first number on the rating scale.
        """
        text = (text or "").strip()
        if self.parsing == "lamp":
            return text
        if self.kind == "rating":
            value = metrics.parse_rating(text, *self.rating_range)
            if value is None:
                return text
            return str(int(value)) if value.is_integer() else str(value)
        if self.kind == "classification":
            return match_label(text, self.labels_for(input))
        return text

    def evaluate(
        self, predictions: Sequence[str], golds: Sequence[str], inputs: Sequence[str]
    ) -> dict[str, float]:
        """Corpus-level LaMP metrics of parsed predictions against golds."""
        if self.kind == "rating":
            low, high = self.rating_range
            return {
                "MAE": metrics.mae(predictions, golds, low, high, parsing=self.parsing),
                "RMSE": metrics.rmse(predictions, golds, low, high, parsing=self.parsing),
            }
        if self.kind == "classification":
            labels = label_union(self.labels_for(x) for x in inputs)
            return {
                "accuracy": metrics.accuracy(predictions, golds),
                "F1": metrics.macro_f1(predictions, golds, labels),
            }
        return metrics.rouge(predictions, golds, stemmer=self.parsing == "lenient")

    def eval(self, gold: str, prediction: str) -> float:
        """Eval(y, ŷ) in [0, 1]: the per-example training signal (docs/method.md)."""
        if self.kind == "rating":
            return metrics.eval_rating(gold, prediction, *self.rating_range, parsing=self.parsing)
        if self.kind == "classification":
            return metrics.eval_exact(gold, prediction)
        return metrics.eval_rouge1(gold, prediction, stemmer=self.parsing == "lenient")

    def metric(self, example: Any, pred: Any, trace: Any = None) -> float:
        """DSPy metric: ``Eval`` of ``pred.output`` against ``example.output``."""
        return self.eval(str(example.output), self.parse(str(pred.output), str(example.input)))

    @property
    def parsing_note(self) -> str:
        """One line for results tables and reports: how this task's answers were read and scored."""
        return PARSING_NOTES[self.parsing]

    @property
    def lower_is_better(self) -> bool:
        return self.kind == "rating"

    @property
    def primary_metric(self) -> str:
        return {"rating": "MAE", "classification": "accuracy", "generation": "rouge-1"}[self.kind]


PARSING_NOTES: dict[str, str] = {
    "lamp": "answers read as LaMP's evaluation does (whole stripped answer; ROUGE without stemming)",
    "lenient": "answers read leniently (label or number found inside the answer; stemmed ROUGE): "
    "not comparable with LaMP's figures",
}


class _Fields(dict):
    """``format_map`` source that names the missing field instead of a bare KeyError."""

    def __init__(self, item: Mapping[str, Any]) -> None:
        super().__init__(item)

    def __missing__(self, key: str) -> str:
        raise DataError(
            f"profile item {self.get('id')!r} lacks field {key!r}", item_id=self.get("id"), field=key
        )
