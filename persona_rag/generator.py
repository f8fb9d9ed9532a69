"""The generator: a task prompt in, the user's answer out, through any ``dspy.LM``.

It wraps one ``dspy.Predict`` whose signature is ``prompt -> output``. The LaMP prompts are
complete instructions already, so the :class:`PromptAdapter` sends the prompt as the user turn
(with the signature's instructions as the system turn and any demos as earlier turns) instead of
DSPy's field-marker format, which small models cannot follow. Prompt optimizers still work: they
change the instructions and demos that this adapter renders.

With the in-process model of :mod:`persona_rag.lm`, bulk calls skip DSPy's per-call machinery and
run as batches, and classification tasks are answered by label scoring (the label with the
highest likelihood), which constrains the answer to the label set; a server that returns
log-probabilities does the same for one-character labels (:mod:`persona_rag.server`).

Free-text answers (LaMP-4..7) go through a named answer-extraction step (:func:`extract_answer`,
``answer_extraction="first-line"``) for every model, local or server: small instruction models
wrap the answer in chatter ("The title for the commit is: ...") and run on for lines, and ROUGE
would score the chatter.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

import dspy
import numpy as np

from persona_rag.cache import LRUCache, text_key
from persona_rag.defaults import (
    ANSWER_EXTRACTIONS,
    DEFAULT_LABEL_NORMALIZATION,
    LABEL_NORMALIZATIONS,
    AnswerExtraction,
    LabelNormalization,
)
from persona_rag.errors import ConfigError, DataError, GenerationError, StateError
from persona_rag.fingerprint import public_settings, stable_hash
from persona_rag.lm import LocalLM, local_lm, local_model_of
from persona_rag.lm.state import LM_STATE_KEY, dump_lm, legacy_record, load_lm
from persona_rag.server import (
    DEFAULT_CONCURRENCY,
    call_error,
    gives_log_probs,
    label_log_probs,
    scorable_labels,
)
from persona_rag.tasks import ApproxTokenizer, HFTokenizer, Tokenizer

__all__ = [
    "ANSWER_EXTRACTIONS",
    "DEFAULT_LABEL_NORMALIZATION",
    "Generator",
    "PersonalizedAnswer",
    "PromptAdapter",
    "SafePredict",
    "extract_answer",
]

logger = logging.getLogger(__name__)


# Words that may surround "title"/"subject"/... in an answer's preamble ("The title for the commit
# is:", "Suggested email subject:"). A closed list, so that a real subject such as "BUG: fix x" or
# "Fix title bar: ..." is never taken for a preamble.
_FILLER = (
    r"(?:the|a|an|my|this|that|your|its|new|suggested|generated|proposed|possible|final|short|"
    r"commit|email|e-mail|news|article|paper|tweet|post|message|for|of|to|is|would|could|will|be|"
    r"it|in|here|line)"
)
_PREAMBLES = (
    re.compile(r"^(?:sure|certainly|of course|okay|ok)[!,.]\s*", re.IGNORECASE),
    re.compile(r"^(?:here(?:'s|\s+is|\s+are))\b[^:\n]*:\s*", re.IGNORECASE),
    re.compile(
        rf"^(?:{_FILLER}\s+)*(?:title|subject|headline|tweet|paraphrase|answer|output)"
        rf"(?:\s+{_FILLER})*\s*(?::\s*|(?=[\"“']))",
        re.IGNORECASE,
    ),
)
_QUOTED = re.compile(r'^["“](?P<answer>.+?)["”]')  # a reply that opens with a quote: its first quoted span
_WRAPPED = re.compile(r"^(\*\*|[`'])(?P<answer>.+)\1\.?$")  # a whole line in bold, backticks or single quotes
_FENCE = re.compile(r"^(?:```|~~~)")


def _answer_in(line: str) -> str:
    """The answer a single line holds: preambles and surrounding quotes removed ("" if none).

    A line that opens with a double quote answers with its first quoted span, which also covers
    replies that copy the prompt's entry pattern (``"Fix x" is the title for "..."``).
    """
    line = line.strip()
    if _FENCE.match(line):
        return ""
    for pattern in _PREAMBLES:
        line = pattern.sub("", line, count=1).strip()
    quoted = _QUOTED.match(line) or _WRAPPED.match(line)
    return quoted["answer"].strip() if quoted else line


def _first_answer(text: str) -> str | None:
    """The first line of ``text`` that holds an answer, or ``None``.

    A line that still ends with a colon after its preamble is gone introduces the next line
    ("The user wants a subject for this commit:") and is skipped, like code fences.
    """
    for line in text.splitlines():
        answer = _answer_in(line)
        if answer and not answer.endswith(":"):
            return answer
    return None


def extract_answer(text: str) -> str:
    """The answer alone from a model's free-text reply (the ``first-line`` answer extraction).

    The first line with content, without a preamble ("Title:", "Subject:", "Sure!", "Here is
    the title:", "The title for the commit is:"), lead-in lines that end with a colon, code fences
    and surrounding quotes or bold marks. A reply with no such line gives its first non-empty line.

    Example:
        >>> extract_answer('The title for the commit is: "BUG: fix ldexp on 64 bits"\\nIt fixes ...')
        'BUG: fix ldexp on 64 bits'
    """
    answer = _first_answer(text or "")
    if answer is not None:
        return answer
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def _answer_line_done(text: str) -> bool:
    """Stop rule for local generation: a complete line (before the last line break) holds the answer."""
    return _first_answer(text.rpartition("\n")[0]) is not None


class PersonalizedAnswer(dspy.Signature):
    """Answer the request the way this user would."""

    prompt: str = dspy.InputField(desc="the task input, preceded by items from the user's profile")
    output: str = dspy.OutputField(desc="the answer only")


class PromptAdapter(dspy.Adapter):
    """Render ``prompt`` as the user turn and read the whole completion as ``output``."""

    def format(
        self, signature: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]
    ) -> list[dict[str, Any]]:
        messages = []
        if signature.instructions:
            messages.append({"role": "system", "content": signature.instructions})
        for demo in demos:
            if "prompt" in demo and "output" in demo:
                messages.append({"role": "user", "content": str(demo["prompt"])})
                messages.append({"role": "assistant", "content": str(demo["output"])})
        messages.append({"role": "user", "content": str(inputs["prompt"])})
        return messages

    def parse(self, signature: Any, completion: str) -> dict[str, Any]:
        return {"output": (completion or "").strip()}


class SafePredict(dspy.Predict):
    """``dspy.Predict`` whose LM is saved as data and loaded through an allow-list.

    The LM goes under its own key as a record of :mod:`persona_rag.lm.state` (model path and
    fingerprint, or model string and endpoint; never a key or a class to import), and DSPy's own
    ``lm`` entry stays empty, so a saved program loads without ``allow_unsafe_lm_state``.
    """

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        bare = copy.copy(self)
        bare.lm = None
        state = dspy.Predict.dump_state(bare, json_mode=json_mode)
        state[LM_STATE_KEY] = dump_lm(self.lm)
        return state

    def load_state(self, state: dict[str, Any], *, allow_unsafe_lm_state: bool = False) -> SafePredict:
        """Load demos, signature and the LM record.

        ``allow_unsafe_lm_state`` is accepted for DSPy's interface and has no effect here: the LM is
        always restored through :func:`persona_rag.lm.state.load_lm`, so no file can make this
        load import a class or redirect requests, whatever the caller passes.
        """
        state = dict(state)
        record = state.pop(LM_STATE_KEY, None)
        legacy = state.pop("lm", None)
        if record is None and legacy is not None:
            if not isinstance(legacy, dict):
                raise StateError(f"the generator's lm entry is not an LM record: {legacy!r}")
            record = legacy_record(legacy)
        lm = load_lm(record, current=self.lm)
        super().load_state({**state, "lm": None})
        self.lm = lm
        return self


class Generator(dspy.Module):
    """Generate a personalised answer from a prompt.

    Args:
        lm: any ``dspy.LM`` (a provider, an OpenAI-compatible server, or
            :func:`persona_rag.lm.local_lm`). ``None`` uses the LM given to ``dspy.configure``,
            and if there is none, the offline default SmolLM2-135M-Instruct.
        max_new_tokens: answer length limit for free generation.
        label_scoring: with a label set, pick the most likely label instead of generating
            (constrained answers; one forward pass for single-token labels). In-process models
            score any label; a server model scores one-character labels when it returns
            log-probabilities (:mod:`persona_rag.server`), else its free answer is parsed.
        calibrate: with label scoring, divide the label probabilities by those the model gives a
            content-free version of the prompt (contextual calibration, Zhao et al. 2021), which
            removes a small model's bias towards some labels (SmolLM2 says "1" to everything).
        label_decision: ``argmax`` picks the best label; ``mean`` answers the probability-weighted
            mean of numeric labels (ratings), which lowers MAE/RMSE when the model is unsure.
        label_normalization: how label scoring scores a multi-token label: ``sum`` of its token
            log-probabilities (its likelihood, which favours short labels) or their ``mean`` per
            token. Single-token labels (ratings) score the same either way.
        answer_extraction: ``first-line`` (default) takes the answer alone out of a free-text reply
            (:func:`extract_answer`; the local model also stops at the end of the answer line);
            ``none`` keeps the whole reply. It applies to prompts without labels (LaMP-4..7), for
            local and server models alike; results tables should state it.
        batch_size: prompts per forward pass of a local model.
        concurrency: requests in flight at once to a server model (bulk calls); it only schedules
            the work, so it is no part of the fingerprint.

    Example (it loads or trains a model, so it is shown here and not run as a doctest)::

        generator = Generator(lm=local_lm())
        generator(prompt="Which is bigger, 2 or 3? Answer with the number.", labels=["2", "3"]).output
        # '3'
    """

    def __init__(
        self,
        *,
        lm: Any = None,
        max_new_tokens: int = 32,
        label_scoring: bool = True,
        calibrate: bool = False,
        label_decision: Literal["argmax", "mean"] = "argmax",
        label_normalization: LabelNormalization = DEFAULT_LABEL_NORMALIZATION,
        answer_extraction: AnswerExtraction = "first-line",
        batch_size: int = 8,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        super().__init__()
        self.predict = SafePredict(PersonalizedAnswer)
        if lm is not None:
            self.predict.lm = lm
        self.max_new_tokens = max_new_tokens
        self.label_scoring = label_scoring
        self.calibrate = calibrate
        if label_decision not in ("argmax", "mean"):
            raise ConfigError(f"label_decision must be 'argmax' or 'mean', got {label_decision!r}")
        self.label_decision = label_decision
        if label_normalization not in LABEL_NORMALIZATIONS:
            raise ConfigError(
                f"label_normalization must be one of {LABEL_NORMALIZATIONS}, got {label_normalization!r}"
            )
        self.label_normalization = label_normalization
        if answer_extraction not in ANSWER_EXTRACTIONS:
            raise ConfigError(
                f"answer_extraction must be one of {ANSWER_EXTRACTIONS}, got {answer_extraction!r}"
            )
        self.answer_extraction = answer_extraction
        self.batch_size = batch_size
        self.concurrency = concurrency
        self._content_free_cache: LRUCache[str, np.ndarray] = LRUCache(4096)
        self.adapter = PromptAdapter()
        self._default_lm: Any = None

    # ------------------------------------------------------------------------- which model
    @property
    def lm(self) -> Any:
        """The LM in use: this generator's, else ``dspy.settings.lm``, else the local default."""
        lm = self.predict.lm or dspy.settings.lm
        if lm is None:
            if self._default_lm is None:
                logger.info("no LM configured; using the offline default SmolLM2-135M-Instruct")
                self._default_lm = local_lm()
            lm = self._default_lm
        return lm

    @property
    def local_model(self) -> LocalLM | None:
        """The in-process model, when the LM in use is one."""
        return local_model_of(self.lm)

    @property
    def tokenizer(self) -> Tokenizer:
        """For prompt budgets: the model's own tokenizer when local, else whitespace tokens."""
        model = self.local_model
        return HFTokenizer(model.tokenizer) if model is not None else ApproxTokenizer()

    def fingerprint(self) -> dict[str, Any]:
        """What an answer depends on besides the conversation (which carries the instructions and
        demos): the model, by the content of its files for an in-process model or, for a server, by
        its record (model string, endpoint) and every request setting it sends (``stop``,
        ``top_k``, ``extra_body`` ..., never a credential), and every plain setting of this
        generator (its ``answer_extraction`` decides the local model's stop rule), including any
        added later; ``batch_size`` and ``concurrency`` only schedule the work."""
        local = self.local_model
        if local is not None:
            model = local.fingerprint()
        else:
            model = {**(dump_lm(self.lm) or {}), "request": _request_settings(self.lm)}
        scheduling = frozenset({"batch_size", "concurrency"})
        return {"model": model, "settings": public_settings(self, exclude=scheduling)}

    def messages(self, prompt: str) -> list[dict[str, Any]]:
        """The conversation the model receives for ``prompt`` (instructions, demos, prompt)."""
        demos = [dict(demo) for demo in self.predict.demos]
        return self.adapter.format(self.predict.signature, demos, {"prompt": prompt})

    # ------------------------------------------------------------------------------ calls
    def forward(
        self, prompt: str, labels: Sequence[str] = (), content_free_prompt: str | None = None
    ) -> dspy.Prediction:
        """One answer.

        Args:
            prompt: the full prompt.
            labels: the allowed answers of a classification or rating task (optional).
            content_free_prompt: the same prompt with the input's content replaced by ``N/A``,
                used when ``calibrate`` is on.
        """
        if labels and self.label_scoring:
            if self.local_model is not None:
                return self.generate_batch([prompt], [labels], [content_free_prompt])[0]
            if scorable_labels(labels) and gives_log_probs(self.lm):
                return self._server_scored(prompt, labels)
        try:
            with dspy.context(adapter=self.adapter, lm=self.lm):
                prediction = self.predict(prompt=prompt, config={"max_tokens": self.max_new_tokens})
        except Exception as error:
            raise call_error(error, self.lm) from error
        return dspy.Prediction(output=self._answer(prediction.output, labels), label_scores=None)

    def generate_batch(
        self,
        prompts: Sequence[str],
        labels: Sequence[Sequence[str]] | None = None,
        content_free_prompts: Sequence[str | None] | None = None,
        *,
        num_threads: int | None = None,
    ) -> list[dspy.Prediction]:
        """Answers for many prompts: batched forward passes locally, concurrent calls otherwise.

        Args:
            prompts: the prompts.
            labels: per prompt, the allowed labels (empty for free generation).
            content_free_prompts: per prompt, its content-free version (for ``calibrate``).
            num_threads: concurrent requests when the LM is a remote ``dspy.LM`` (default:
                ``concurrency``).
        """
        labels = list(labels) if labels is not None else [()] * len(prompts)
        if len(labels) != len(prompts):
            raise DataError(f"{len(prompts)} prompts for {len(labels)} label sets")
        model = self.local_model
        if model is None:
            return self._remote_batch(prompts, labels, num_threads or self.concurrency)
        results: list[dspy.Prediction | None] = [None] * len(prompts)
        scored = [i for i, ls in enumerate(labels) if ls and self.label_scoring]
        free = [i for i in range(len(prompts)) if i not in set(scored)]
        self._check_label_settings([labels[i] for i in scored], content_free_prompts, scored)
        try:
            if scored:
                scores = model.score(
                    [self.messages(prompts[i]) for i in scored],
                    [labels[i] for i in scored],
                    batch_size=self.batch_size,
                    normalization=self.label_normalization,
                )
                if self.calibrate:
                    probes = [content_free_prompts[i] for i in scored]  # type: ignore[index]
                    biases = self._content_free_scores(model, probes, [labels[i] for i in scored])  # type: ignore[arg-type]
                    scores = [_log_softmax(row) - _log_softmax(bias) for row, bias in zip(scores, biases)]
                for i, row in zip(scored, scores):
                    results[i] = dspy.Prediction(
                        output=self._decide(labels[i], row), label_scores=dict(zip(labels[i], row.tolist()))
                    )
            if free:
                outs = model.generate(
                    [self.messages(prompts[i]) for i in free],
                    max_new_tokens=self.max_new_tokens,
                    batch_size=self.batch_size,
                    stop=self._stop if all(not labels[i] for i in free) else None,
                )
                for i, out in zip(free, outs):
                    results[i] = dspy.Prediction(output=self._answer(out.text, labels[i]), label_scores=None)
        except Exception as error:
            raise GenerationError(
                f"local model {model.name} failed ({type(error).__name__}: {error})"
            ) from error
        return results  # type: ignore[return-value]

    def _check_label_settings(
        self,
        label_sets: Sequence[Sequence[str]],
        content_free_prompts: Sequence[str | None] | None,
        scored: list[int],
    ) -> None:
        """Usage errors are raised before any model call, and not as generation failures."""
        if self.calibrate and (
            content_free_prompts is None or any(content_free_prompts[i] is None for i in scored)
        ):
            raise ConfigError("calibrate=True needs a content-free prompt for every labelled prompt")
        if self.label_decision == "mean":
            for labels in label_sets:
                if not all(_is_number(label) for label in labels):
                    raise ConfigError(f"label_decision='mean' needs numeric labels, got {list(labels)}")

    @property
    def _stop(self) -> Callable[[str], bool] | None:
        """The local model's stop rule for free-text answers: the end of the answer line."""
        return _answer_line_done if self.answer_extraction == "first-line" else None

    def _answer(self, text: str, labels: Sequence[str]) -> str:
        """A free reply as the answer: extracted for prompts without labels (``answer_extraction``).

        Labelled prompts answered freely (``label_scoring=False`` or a server model) keep the reply
        as it is: the task's parser finds the label or rating in it.
        """
        if labels or self.answer_extraction == "none":
            return text
        return extract_answer(text)

    def _decide(self, labels: Sequence[str], scores: np.ndarray) -> str:
        if self.label_decision == "mean":
            values = np.array([float(label) for label in labels])
            return f"{float(np.exp(_log_softmax(scores)) @ values):.3f}"
        return labels[int(np.argmax(scores))]

    def _content_free_scores(
        self, model: LocalLM, prompts: Sequence[str], labels: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """Label scores of content-free prompts, cached: without a profile they are all the same."""
        identity = stable_hash(model.fingerprint())  # not the name: a retrained folder keeps its name
        mode = f"{identity}|{self.label_normalization}"
        keys = [f"{mode}|{text_key([p, *ls])}" for p, ls in zip(prompts, labels)]
        missing = {key: i for i, key in enumerate(keys) if self._content_free_cache.get(key) is None}
        if missing:
            rows = model.score(
                [self.messages(prompts[i]) for i in missing.values()],
                [labels[i] for i in missing.values()],
                batch_size=self.batch_size,
                normalization=self.label_normalization,
            )
            for key, row in zip(missing, rows):
                self._content_free_cache.put(key, row)
        return [self._content_free_cache.get(key) for key in keys]  # type: ignore[misc]

    def _server_scored(self, prompt: str, labels: Sequence[str]) -> dspy.Prediction:
        """Label scoring through a server's first-token log-probabilities (:mod:`persona_rag.server`)."""
        try:
            scores = label_log_probs(self.lm, self.messages(prompt), labels)
        except Exception as error:
            raise call_error(error, self.lm) from error
        if scores is None:  # the server gave them for its probe: this answer is broken, not the setting
            raise GenerationError(f"the LLM server returned no log-probabilities for labels {list(labels)}")
        return dspy.Prediction(
            output=self._decide(labels, np.array(scores)), label_scores=dict(zip(labels, scores))
        )

    def _remote_batch(
        self, prompts: Sequence[str], labels: Sequence[Sequence[str]], num_threads: int
    ) -> list[dspy.Prediction]:
        from concurrent.futures import ThreadPoolExecutor

        if any(labels) and (self.calibrate or self.label_decision == "mean"):
            raise ConfigError(
                "calibrate and label_decision='mean' need label probabilities, which a server model "
                "does not give here (persona_rag.server); use an in-process model (--model) or drop "
                "--calibrate / --label-decision mean"
            )
        lm = self.lm  # read here: a dspy.context of the calling thread is not seen by workers

        def one(i: int) -> dspy.Prediction:
            with dspy.context(lm=lm):  # label scoring where the server allows it, else parsing
                return self(prompt=prompts[i], labels=labels[i])

        pool = ThreadPoolExecutor(max_workers=max(1, num_threads))
        futures = [pool.submit(one, i) for i in range(len(prompts))]
        try:
            return [future.result() for future in futures]
        finally:
            # On a failure the queued requests are dropped rather than sent (a server that is down
            # would make each of them wait out its retries).
            pool.shutdown(wait=True, cancel_futures=True)


# Request settings that say who is asking, not what is asked: never part of a fingerprint.
_CREDENTIALS = frozenset({"api_key", "azure_ad_token", "headers", "extra_headers"})


def _request_settings(lm: Any) -> dict[str, Any]:
    """Every setting a server LM sends with its requests, credentials left out, as plain JSON
    (a value JSON cannot write is taken by its ``repr``)."""
    kwargs = getattr(lm, "kwargs", None) or {}
    settings = {key: value for key, value in kwargs.items() if key not in _CREDENTIALS}
    return json.loads(json.dumps(settings, sort_keys=True, default=repr))


def _log_softmax(row: np.ndarray) -> np.ndarray:
    shifted = row - row.max()
    return shifted - np.log(np.exp(shifted).sum())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
