"""Task specifications: everything that differs between LaMP tasks, in one declarative object.

A :class:`TaskSpec` says how to read a task's inputs and profiles (query extraction, document text),
how to build the personalised prompt (per-entry template, combination, token-budget truncation as
in the LaMP code), how to parse an answer and how to score it (corpus metrics and the per-example
Eval signal). The seven LaMP tasks are registered here; a user declares a new task by building a
``TaskSpec`` and calling :func:`register_task`, without editing the library.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from persona_rag import metrics
from persona_rag.errors import DataError, UnknownTaskError

__all__ = [
    "PARSING_NOTES",
    "TASKS",
    "ApproxTokenizer",
    "Document",
    "HFTokenizer",
    "TaskSpec",
    "Tokenizer",
    "get_task",
    "register_task",
]

logger = logging.getLogger(__name__)

ENTRY_SEPARATOR = ", and "


class Tokenizer(Protocol):
    """The two calls the prompt builder needs to count and cut tokens."""

    def encode(self, text: str) -> list: ...

    def decode(self, tokens: list) -> str: ...


class ApproxTokenizer:
    """Whitespace "tokens": a tokenizer-free budget for server models whose tokenizer is unknown."""

    def encode(self, text: str) -> list:
        return text.split()

    def decode(self, tokens: list) -> str:
        return " ".join(tokens)


class HFTokenizer:
    """Adapts a Hugging Face tokenizer to :class:`Tokenizer` (no special tokens either way)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, tokens: list) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)


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


Combine = str | Callable[[str, str], str]
Kind = Literal["classification", "rating", "generation"]


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """A task: its fields, templates, parsing and metrics.

    Attributes:
        name: canonical name, e.g. ``"LaMP-3"``.
        kind: ``classification`` (accuracy, macro-F1), ``rating`` (MAE, RMSE) or ``generation``
            (ROUGE-1, ROUGE-L). It decides parsing, metrics and the Eval signal.
        profile_fields: fields every profile item must have besides ``id`` (``date`` is optional).
        document_template: retrieval text of an item, e.g. ``"{title} {abstract}"``; ``date: ...`` is
            appended when the item has a date.
        entry_template: the per-profile-entry prompt (PPEP) of PAPER.md.
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
            raise ValueError(f"task {self.name!r}: a classification task needs labels or labels_pattern")
        if self.truncate_field is not None and self.truncate_field not in self.profile_fields:
            raise ValueError(
                f"task {self.name!r}: truncate_field {self.truncate_field!r} is not a profile field"
            )
        if self.rating_field is not None and self.rating_field not in self.profile_fields:
            raise ValueError(f"task {self.name!r}: rating_field {self.rating_field!r} is not a profile field")
        if self.parsing not in metrics.PARSINGS:
            raise ValueError(
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
        labels, exactly as LaMP's evaluation compares them (else no answer could ever be right).
        """
        if self.kind == "rating" and not self._on_scale(output):
            low, high = self.rating_range
            raise DataError(
                f"{where}: field 'output' is {output!r}, not a rating from {low} to {high}", field="output"
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
    def entry(self, item: Mapping[str, Any]) -> str:
        """One profile entry rendered with the PPEP template."""
        return self.entry_template.format_map(_Fields(item))

    def prompt(
        self,
        input: str,
        items: Sequence[Mapping[str, Any]],
        *,
        tokenizer: Tokenizer | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """φ_p(x, items): the personalised prompt, cut to ``max_tokens`` when a tokenizer is given.

        The budget is split as in the LaMP code (PAPER.md): the input keeps at most
        ``min(len(input), 0.6·max)`` tokens for a start, and the profile gets the rest,
        ``max − min(len(input), 0.6·max)`` tokens, shared equally across entries, with any unused
        share carried to the next entry. An input longer than its 60% loses its tail (LaMP cuts the
        whole prompt at ``max``, which cuts the input's end); room the entries leave unused goes
        back to the input, so a long input is cut only as far as the entries need. A long input
        therefore never pushes every profile item out of the prompt.

        If the result is still too long (the combination's own words are not in the budget),
        profile text gives way first (entries are cut further, then the lowest-ranked ones
        dropped). Without items, an input longer than ``max_tokens`` is cut from its end. Every
        cut of the input is logged as a warning.
        """
        if tokenizer is None or max_tokens is None:
            return self._combine(input, [self.entry(item) for item in items]) if items else input
        input_ids = tokenizer.encode(input)
        if not items:
            return self._alone(input, input_ids, max_tokens, tokenizer)
        reserved = min(len(input_ids), int(0.6 * max_tokens))
        head = input if reserved == len(input_ids) else tokenizer.decode(input_ids[:reserved])
        full_budget = max_tokens - reserved
        budget = full_budget
        items = list(items)
        while items:
            entries = self._fit_entries(items, budget, tokenizer)
            prompt = self._combine(head, entries)
            used = len(tokenizer.encode(prompt))
            if used <= max_tokens:
                if head is input:
                    return prompt
                return self._give_back(input_ids, reserved, entries, prompt, used, max_tokens, tokenizer)
            if budget > 0 and self.truncate_field is not None:
                # The combination's own words ("Following the given patterns", the ". " join) are
                # not in the budget: make room for them by cutting profile text, not whole entries.
                budget = max(min(budget, used - reserved) - (used - max_tokens), 0)
            else:
                items.pop()
                budget = full_budget
        return self._alone(input, input_ids, max_tokens, tokenizer)

    def _alone(self, input: str, input_ids: list, max_tokens: int, tokenizer: Tokenizer) -> str:
        """The prompt without profile items: the input, cut from its end when over the budget."""
        if len(input_ids) <= max_tokens:
            return input
        logger.warning("task %s: input of %d tokens cut to %d", self.name, len(input_ids), max_tokens)
        return tokenizer.decode(input_ids[:max_tokens])

    def _give_back(
        self,
        input_ids: list,
        reserved: int,
        entries: Sequence[str],
        prompt: str,
        used: int,
        max_tokens: int,
        tokenizer: Tokenizer,
    ) -> str:
        """The prompt with its cut input lengthened into the room the entries left unused.

        Token counts do not add up exactly across a join, so each try is measured and the input
        shortened by the excess until the prompt fits (the reserved cut always does).
        """
        keep = min(reserved + max_tokens - used, len(input_ids))
        while keep > reserved:
            longer = self._combine(tokenizer.decode(input_ids[:keep]), entries)
            excess = len(tokenizer.encode(longer)) - max_tokens
            if excess <= 0:
                prompt = longer
                break
            keep -= excess
        if keep < len(input_ids):
            logger.warning(
                "task %s: input of %d tokens cut to %d to leave room for the profile",
                self.name,
                len(input_ids),
                max(keep, reserved),
            )
        return prompt

    def _fit_entries(
        self, items: Sequence[Mapping[str, Any]], budget: int, tokenizer: Tokenizer
    ) -> list[str]:
        separator = len(tokenizer.encode(ENTRY_SEPARATOR))
        share = max(budget - separator * (len(items) - 1), 0) // len(items)
        carried = 0
        entries = []
        for item in items:
            if self.truncate_field is None:
                entries.append(self.entry(item))
                continue
            overhead = len(tokenizer.encode(self.entry({**item, self.truncate_field: ""})))
            allowed = max(share + carried - overhead, 0)
            text_ids = tokenizer.encode(str(item[self.truncate_field]))
            kept = text_ids[:allowed]
            carried = max(share + carried - overhead - len(kept), 0)
            entries.append(self.entry({**item, self.truncate_field: tokenizer.decode(kept)}))
        return entries

    def _combine(self, input: str, entries: Sequence[str]) -> str:
        joined = ENTRY_SEPARATOR.join(entries)
        if callable(self.combine):
            return self.combine(input, joined)
        return self.combine.format(entries=joined, input=input)

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
            return _match_label(text, self.labels_for(input))
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
            labels = _label_union(self.labels_for(x) for x in inputs)
            return {
                "accuracy": metrics.accuracy(predictions, golds),
                "F1": metrics.macro_f1(predictions, golds, labels),
            }
        return metrics.rouge(predictions, golds, stemmer=self.parsing == "lenient")

    def eval(self, gold: str, prediction: str) -> float:
        """Eval(y, ŷ) in [0, 1]: the per-example training signal of PAPER.md."""
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


def _match_label(text: str, labels: Sequence[str]) -> str:
    """The label an answer names: exact match, then the earliest label mentioned, else the text."""
    cleaned = text.strip().strip("\"'`.").strip().lower()
    for label in labels:
        if cleaned == label.lower():
            return label
    lowered = text.lower()
    found = [
        (lowered.find(label.lower()), -len(label), label) for label in labels if label.lower() in lowered
    ]
    return min(found)[2] if found else text


def _label_union(label_sets: Any) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for labels in label_sets:
        seen.update(dict.fromkeys(labels))
    return tuple(seen)


# --------------------------------------------------------------------------------- the registry
TASKS: dict[str, TaskSpec] = {}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def register_task(spec: TaskSpec, *, overwrite: bool = False) -> TaskSpec:
    """Make ``spec`` available to :func:`get_task`, the data loader and the CLI by its names."""
    for name in (spec.name, *spec.aliases):
        key = _key(name)
        if key in TASKS and TASKS[key] is not spec and not overwrite:
            raise ValueError(f"task name {name!r} is already registered (pass overwrite=True to replace it)")
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


def _citation_query(input: str) -> str:
    titles = re.findall(r'\[\d\]:\s*"(.*?)"', input)
    return " ".join(titles) if titles else input


def _after_title(input: str, entries: str) -> str:
    position = input.find("title")
    if position < 0:
        return f"{entries}. {input}"
    cut = position + len("title")
    return f"{input[:cut]}{ENTRY_SEPARATOR}{entries}{input[cut:]}"


MOVIE_TAGS = (
    "sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia", "dark comedy", "classic",
    "psychology", "fantasy", "romance", "thought-provoking", "social commentary", "violence", "true story",
)  # fmt: skip
NEWS_CATEGORIES = (
    "travel", "education", "parents", "style & beauty", "entertainment", "food & drink",
    "science & technology",
    "business", "sports", "healthy living", "women", "politics", "crime", "culture & arts", "religion",
)  # fmt: skip

LAMP_TASKS = (
    TaskSpec(
        name="LaMP-1", aliases=("LaMP_1", "citation"), kind="classification",
        description="personalized citation identification",
        profile_fields=("title", "abstract"), document_template="{title} {abstract}",
        entry_template='"{title}"', truncate_field="title", combine=_after_title,
        query_fn=_citation_query, labels=("[1]", "[2]"),
    ),
    TaskSpec(
        name="LaMP-2", aliases=("LaMP_2", "LaMP-2M", "movie-tagging"), kind="classification",
        description="personalized movie tagging",
        profile_fields=("description", "tag"), document_template="{description}",
        entry_template='the tag for the movie: "{description}" is "{tag}"', truncate_field="description",
        query_marker="description:", labels=MOVIE_TAGS, labels_pattern=r"tags:\s*\[(.*?)\]",
    ),
    TaskSpec(
        name="LaMP-2N", aliases=("LaMP_2N", "news-categorization"), kind="classification",
        description="personalized news categorization (first LaMP release)",
        profile_fields=("text", "category"), document_template="{text}",
        entry_template='the category for the article: "{text}" is "{category}"', truncate_field="text",
        query_marker="article:", labels=NEWS_CATEGORIES, labels_pattern=r"categories:\s*\[(.*?)\]",
    ),
    TaskSpec(
        name="LaMP-3", aliases=("LaMP_3", "product-rating"), kind="rating",
        description="personalized product rating",
        profile_fields=("text", "score"), document_template="{text}",
        entry_template='{score} is the score for "{text}"', truncate_field="text", query_marker="review:",
        rating_field="score",
    ),
    TaskSpec(
        name="LaMP-4", aliases=("LaMP_4", "news-headline"), kind="generation",
        description="personalized news headline generation",
        profile_fields=("title", "text"), document_template="{title} {text}",
        entry_template='"{title}" is the title for "{text}"', truncate_field="text", query_marker="article:",
    ),
    TaskSpec(
        name="LaMP-5", aliases=("LaMP_5", "scholarly-title"), kind="generation",
        description="personalized scholarly title generation",
        profile_fields=("title", "abstract"), document_template="{title} {abstract}",
        entry_template='"{title}" is the title for "{abstract}"', truncate_field="abstract",
        combine="{entries}. Following the given patterns {input}", query_marker="paper:",
    ),
    TaskSpec(
        name="LaMP-6", aliases=("LaMP_6", "email-subject"), kind="generation",
        description="personalized email subject generation",
        profile_fields=("title", "text"), document_template="{title} {text}",
        entry_template='"{title}" is the title for "{text}"', truncate_field="text",
    ),
    TaskSpec(
        name="LaMP-7", aliases=("LaMP_7", "tweet-paraphrasing"), kind="generation",
        description="personalized tweet paraphrasing",
        profile_fields=("text",), document_template="{text}", entry_template='"{text}"',
        truncate_field="text",
        combine="{entries} are written by a person. Following the given patterns {input}",
    ),
)  # fmt: skip

for _spec in LAMP_TASKS:
    register_task(_spec)
