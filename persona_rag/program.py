"""PersonalizedRAG: retrieve from the user's profile, build the task prompt, generate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import dspy
from dspy.predict.parameter import Parameter

from persona_rag.errors import ConfigError, GenerationError, ProgramError, StateError
from persona_rag.generator import Generator
from persona_rag.retrievers import BM25Retriever, RetrievalResult, Retriever
from persona_rag.selector import Selection, Selector
from persona_rag.tasks import TaskSpec, get_task

if TYPE_CHECKING:
    from persona_rag.store import ProfileStore

__all__ = ["PersonalizedRAG", "RAGSettings", "personalized_rag_in"]

Profile = Sequence[Mapping[str, Any]]
Scope = tuple[Sequence[str] | None, str | datetime | None]  # (profile_ids, before) of a stored user


def _positive(name: str, value: Any) -> int:
    """``value`` if it is a whole number of at least 1 (``k=-5`` would retrieve nothing, silently)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
    return value


class RAGSettings(Parameter):
    """The program's own settings, saved by ``program.save()`` even inside a larger program.

    DSPy saves only ``Parameter`` objects, so plain attributes such as ``k`` would be lost; this
    small parameter carries them. Settings read from a file pass the constructor's checks, and never
    change the task: a program built for one task reads its inputs, labels and golds that way.
    """

    def __init__(self, *, task: str, k: int, max_input_tokens: int | None) -> None:
        self.task, self.k = task, _positive("k", k)
        self.max_input_tokens = (
            None if max_input_tokens is None else _positive("max_input_tokens", max_input_tokens)
        )

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        return {"task": self.task, "k": self.k, "max_input_tokens": self.max_input_tokens}

    def load_state(self, state: Mapping[str, Any], **kwargs: Any) -> RAGSettings:
        try:
            saved = RAGSettings(
                task=get_task(state["task"]).name,
                k=state["k"],
                max_input_tokens=state.get("max_input_tokens"),
            )
        except (KeyError, TypeError, ValueError) as error:  # UnknownTaskError is a KeyError
            raise StateError(f"the program's settings {state!r} cannot be used: {error}") from error
        if saved.task != self.task:
            raise StateError(
                f"the file holds a {saved.task} program and this program is for {self.task}: load it "
                f"into PersonalizedRAG(task={saved.task!r}, ...)"
            )
        self.k, self.max_input_tokens = saved.k, saved.max_input_tokens
        return self

    def reset(self) -> None:
        """Settings are configuration, not learned state: ``reset_copy()`` keeps them."""


class PersonalizedRAG(dspy.Module):
    """Personalised retrieval-augmented generation for one task.

    ``program(input=..., profile=[...])`` retrieves ``k`` items from the given profile;
    ``program(input=..., user_id=...)`` retrieves them from the program's
    :class:`~persona_rag.store.ProfileStore`; ``profile_ids=[...]`` (the question's own profile
    item ids) or ``before=date`` limit that to what the question may see, so a store holding a
    user's whole history never shows a question its own or later answers. The result is a
    ``dspy.Prediction`` with ``output`` (parsed: a label, a rating or text), ``raw_output``, the
    retrieved ``items`` with their ``ids``, ``indices`` and ``scores``, and the ``prompt`` sent to
    the LM.

    An empty profile is not an error: nothing is retrieved and the prompt is the bare input (the
    non-personalised fallback).

    With a :class:`~persona_rag.selector.Selector` the program retrieves with every retriever of
    the selector's pool and answers with the one it picks (RSPG); the prediction then also says
    which ``retriever`` was chosen, the ``selection_scores`` and, in Post mode, every member's
    answer (``pool_outputs``), all generated as one batch.

    Args:
        task: a task name (``"LaMP-3"``) or :class:`~persona_rag.tasks.TaskSpec`.
        retriever: any :class:`~persona_rag.retrievers.Retriever`; default BM25.
        generator: a :class:`~persona_rag.generator.Generator`; default: the configured ``dspy`` LM.
        k: items put in the prompt (at least 1).
        store: a profile store, for ``user_id`` calls.
        max_input_tokens: prompt budget (the paper's: 512; at least 1, or ``None``: no budget);
            profile text gives way first.
        selector: choose per input among a pool of retrievers (``retriever`` is then unused).

    Example (it loads or trains a model, so it is shown here and not run as a doctest)::

        import dspy
        from persona_rag import PersonalizedRAG, DenseRetriever, local_lm
        dspy.configure(lm=local_lm())
        program = PersonalizedRAG(task="LaMP-3", retriever=DenseRetriever(), k=4)
        program(input=question, profile=profile).output  # '4'
    """

    def __init__(
        self,
        *,
        task: str | TaskSpec,
        retriever: Retriever | None = None,
        generator: Generator | None = None,
        k: int = 4,
        store: ProfileStore | None = None,
        max_input_tokens: int | None = 512,
        selector: Selector | None = None,
    ) -> None:
        super().__init__()
        spec = get_task(task)
        self._spec = spec
        self.settings = RAGSettings(task=spec.name, k=k, max_input_tokens=max_input_tokens)
        self.retriever = retriever if retriever is not None else BM25Retriever()
        self.generator = generator if generator is not None else Generator()
        self.store = store
        self.selector = selector

    def load(self, path: Any, **kwargs: Any) -> None:
        """``dspy.Module.load``, naming the file when its saved LM is refused. Programs saved by
        persona-rag load without ``allow_unsafe_lm_state`` (see :mod:`persona_rag.lm.state`)."""
        try:
            super().load(path, **kwargs)
        except StateError as error:
            raise StateError(f"{path}: {error}") from error

    @property
    def task(self) -> TaskSpec:
        return self._spec

    @property
    def k(self) -> int:
        return self.settings.k

    # --------------------------------------------------------------------------- retrieval
    def retrieve(
        self,
        input: str,
        profile: Profile | None = None,
        user_id: str | None = None,
        *,
        retriever: Retriever | None = None,
        profile_ids: Sequence[str] | None = None,
        before: str | datetime | None = None,
    ) -> RetrievalResult:
        """The top-k items for ``input`` from ``profile``, or from the store for ``user_id``
        (only ``profile_ids`` / items dated before ``before``, when given)."""
        query = self.task.query(input)
        retriever = retriever or self.retriever
        if profile is not None:
            return retriever.search(query, self.task.documents(profile), self.k)
        if user_id is None:
            raise ConfigError("pass profile=[...] or user_id=... (with a store) to personalise")
        if self.store is None:
            raise ConfigError(
                f"user_id={user_id!r} given but the program has no store; pass store=ProfileStore(...)"
            )
        return retriever.search_store(query, self.store, user_id, self.k, ids=profile_ids, before=before)

    def batch_retrieve(
        self,
        inputs: Sequence[str],
        profiles: Sequence[Profile],
        *,
        retriever: Retriever | None = None,
        k: int | None = None,
    ) -> list[RetrievalResult]:
        """Top-``k`` items for many (input, in-memory profile) pairs in one ``batch_search``.

        ``retriever`` and ``k`` default to the program's; optimizers pass others (a pool of
        retrievers for reader training, ``l`` candidates for ROPG feedback).
        """
        return (retriever or self.retriever).batch_search(
            [self.task.query(x) for x in inputs], [self.task.documents(p) for p in profiles], k or self.k
        )

    def build_prompt(self, input: str, result: RetrievalResult) -> str:
        """φ_p(x, items) within the token budget."""
        settings = self.settings
        tokenizer = self.generator.tokenizer if settings.max_input_tokens else None
        return self.task.prompt(
            input, result.items, tokenizer=tokenizer, max_tokens=settings.max_input_tokens
        )

    # ---------------------------------------------------------------------------- calling
    def forward(
        self,
        input: str,
        profile: Profile | None = None,
        user_id: str | None = None,
        profile_ids: Sequence[str] | None = None,
        before: str | datetime | None = None,
        **_: Any,
    ) -> dspy.Prediction:
        if self.selector is not None:
            return self.batch_forward([input], [profile], [user_id], [profile_ids], [before])[0]
        result = self.retrieve(input, profile, user_id, profile_ids=profile_ids, before=before)
        prompt = self.build_prompt(input, result)
        try:
            answer = self.generator(
                prompt=prompt,
                labels=self.task.labels_for(input),
                content_free_prompt=self.content_free_prompt(input, result),
            )
        except GenerationError as error:
            raise GenerationError(f"user {user_id!r}, input {input[:60]!r}...: {error}") from error
        return self._prediction(input, result, prompt, answer, retriever=self.retriever.kind)

    def batch_forward(
        self,
        inputs: Sequence[str],
        profiles: Sequence[Profile | None] | None = None,
        user_ids: Sequence[str | None] | None = None,
        profile_ids: Sequence[Sequence[str] | None] | None = None,
        before: Sequence[str | datetime | None] | None = None,
    ) -> list[dspy.Prediction]:
        """:meth:`forward` for many inputs, with batched retrieval and batched generation."""
        n = len(inputs)
        profiles = list(profiles) if profiles is not None else [None] * n
        user_ids = list(user_ids) if user_ids is not None else [None] * n
        scopes: list[Scope] = list(zip(profile_ids or [None] * n, before or [None] * n))
        if self.selector is not None:
            return self._selected_forward(inputs, profiles, user_ids, scopes, self.selector)
        results = self._retrieve_many(inputs, profiles, user_ids, scopes, self.retriever)
        prompts = [self.build_prompt(x, r) for x, r in zip(inputs, results)]
        answers = self._generate(inputs, results, prompts)
        return [
            self._prediction(x, r, p, a, retriever=self.retriever.kind)
            for x, r, p, a in zip(inputs, results, prompts, answers)
        ]

    def _retrieve_many(
        self,
        inputs: Sequence[str],
        profiles: Sequence[Profile | None],
        user_ids: Sequence[str | None],
        scopes: Sequence[Scope],
        retriever: Retriever,
    ) -> list[RetrievalResult]:
        """In-memory profiles in one ``batch_search``; stored users one by one."""
        results: list[RetrievalResult | None] = [None] * len(inputs)
        in_memory = [i for i, profile in enumerate(profiles) if profile is not None]
        batch = self.batch_retrieve(
            [inputs[i] for i in in_memory],
            [profiles[i] for i in in_memory],  # type: ignore[misc]
            retriever=retriever,
        )
        for i, result in zip(in_memory, batch):
            results[i] = result
        for i, result in enumerate(results):
            if result is None:
                ids, before = scopes[i]
                results[i] = self.retrieve(
                    inputs[i], None, user_ids[i], retriever=retriever, profile_ids=ids, before=before
                )
        return results  # type: ignore[return-value]

    def _generate(
        self, inputs: Sequence[str], results: Sequence[RetrievalResult], prompts: Sequence[str]
    ) -> list[dspy.Prediction]:
        """One batched generator call; identical prompts (pool members that agree) run once."""
        unique: dict[str, int] = {}
        for i, prompt in enumerate(prompts):
            unique.setdefault(prompt, i)
        first = list(unique.values())
        answers = self.generator.generate_batch(
            [prompts[i] for i in first],
            [self.task.labels_for(inputs[i]) for i in first],
            [self.content_free_prompt(inputs[i], results[i]) for i in first],
        )
        by_prompt = dict(zip(unique, answers))
        return [by_prompt[prompt] for prompt in prompts]

    def _selected_forward(
        self,
        inputs: Sequence[str],
        profiles: Sequence[Profile | None],
        user_ids: Sequence[str | None],
        scopes: Sequence[Scope],
        selector: Selector,
    ) -> list[dspy.Prediction]:
        """RSPG: retrieve with every pool member, select per input, answer with the chosen one.

        Pre mode answers only the chosen prompts; Post mode answers every member's prompt of
        every input in one batch and lets the selector read the answers.
        """
        names = selector.names
        pooled = [self._retrieve_many(inputs, profiles, user_ids, scopes, r) for r in selector.pool.values()]
        results = [[pooled[m][i] for m in range(len(names))] for i in range(len(inputs))]
        prompts = [[self.build_prompt(x, r) for r in row] for x, row in zip(inputs, results)]
        if selector.mode == "pre":
            selections = selector.batch_select(prompts)
            chosen = [names.index(s.chosen) for s in selections]
            picked = [row[c] for row, c in zip(results, chosen)]
            picked_prompts = [row[c] for row, c in zip(prompts, chosen)]
            answers = self._generate(inputs, picked, picked_prompts)
            return [
                self._prediction(x, r, p, a, retriever=s.chosen, selection=s)
                for x, r, p, a, s in zip(inputs, picked, picked_prompts, answers, selections)
            ]
        flat = self._generate(
            [x for x in inputs for _ in names],
            [r for row in results for r in row],
            [p for row in prompts for p in row],
        )
        pool_answers = [flat[i * len(names) : (i + 1) * len(names)] for i in range(len(inputs))]
        selections = selector.batch_select(prompts, [[a.output for a in row] for row in pool_answers])
        out = []
        for x, row, prompt_row, answer_row, selection in zip(
            inputs, results, prompts, pool_answers, selections
        ):
            c = names.index(selection.chosen)
            prediction = self._prediction(
                x, row[c], prompt_row[c], answer_row[c], retriever=selection.chosen, selection=selection
            )
            prediction.pool_outputs = {n: self.task.parse(a.output, x) for n, a in zip(names, answer_row)}
            out.append(prediction)
        return out

    def content_free_prompt(self, input: str, result: RetrievalResult) -> str | None:
        """The prompt with the input's content blanked, for generators that calibrate (``None``
        otherwise); optimizers that answer prompts themselves pass it on to the generator."""
        if not getattr(self.generator, "calibrate", False):
            return None
        return self.build_prompt(self.task.content_free(input), result)

    def _prediction(
        self,
        input: str,
        result: RetrievalResult,
        prompt: str,
        answer: dspy.Prediction,
        *,
        retriever: str,
        selection: Selection | None = None,
    ) -> dspy.Prediction:
        return dspy.Prediction(
            output=self.task.parse(answer.output, input),
            raw_output=answer.output,
            label_scores=answer.label_scores,
            items=result.items,
            ids=result.ids,
            indices=result.indices,
            scores=result.scores,
            prompt=prompt,
            retriever=retriever,
            selection_scores=None if selection is None else selection.scores,
        )


def personalized_rag_in(module: dspy.Module, purpose: str) -> PersonalizedRAG:
    """The one PersonalizedRAG that ``module`` is or holds: optimizers work inside larger programs.

    Args:
        module: a PersonalizedRAG, or a DSPy program holding exactly one.
        purpose: what the caller does with it, for the error (``"ROPG tunes the retriever of"``).

    Raises:
        TypeError: ``module`` holds none, or several.
    """
    if isinstance(module, PersonalizedRAG):
        return module
    found = [sub for _, sub in module.named_sub_modules() if isinstance(sub, PersonalizedRAG)]
    if len(found) != 1:
        raise ProgramError(f"{purpose} one PersonalizedRAG; {type(module).__name__} holds {len(found)}")
    return found[0]
