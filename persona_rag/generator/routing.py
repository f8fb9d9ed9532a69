"""The generator: a task prompt in, the user's answer out, through any ``dspy.LM``.

It wraps one ``dspy.Predict`` (:class:`~persona_rag.generator.predict.SafePredict`) whose
signature is ``prompt -> output``, rendered by :class:`~persona_rag.generator.adapter.PromptAdapter`.
What this module decides is which path answers each prompt: with the in-process model of
:mod:`persona_rag.lm`, bulk calls skip DSPy's per-call machinery and run as batches, and
classification tasks are answered by label scoring (:mod:`persona_rag.generator.labels`), which
constrains the answer to the label set; a server that returns log-probabilities does the same for
one-character labels (:mod:`persona_rag.server`); any other call goes through DSPy, concurrently
for a batch. Free-text answers are read by :mod:`persona_rag.generator.extraction`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

import dspy
import numpy as np

from persona_rag.defaults import (
    ANSWER_EXTRACTIONS,
    DEFAULT_LABEL_NORMALIZATION,
    LABEL_NORMALIZATIONS,
    AnswerExtraction,
    LabelNormalization,
)
from persona_rag.errors import ConfigError, DataError, GenerationError
from persona_rag.fingerprint import public_settings
from persona_rag.generator.adapter import PersonalizedAnswer, PromptAdapter
from persona_rag.generator.extraction import answer_line_done, extract_answer
from persona_rag.generator.labels import ContentFreeScores, calibrated, check_label_settings, decide
from persona_rag.generator.predict import SafePredict
from persona_rag.lm import LocalLM, local_lm, local_model_of
from persona_rag.lm.state import dump_lm
from persona_rag.server import (
    DEFAULT_CONCURRENCY,
    call_error,
    gives_log_probs,
    label_log_probs,
    scorable_labels,
)
from persona_rag.tasks import ApproxTokenizer, HFTokenizer, Tokenizer

__all__ = ["Generator"]

logger = logging.getLogger(__name__)


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
        self._content_free = ContentFreeScores()
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
        check_label_settings(
            calibrate=self.calibrate,
            decision=self.label_decision,
            label_sets=[labels[i] for i in scored],
            content_free_prompts=content_free_prompts,
            scored=scored,
        )
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
                    biases = self._content_free(
                        model,
                        probes,  # type: ignore[arg-type]
                        [labels[i] for i in scored],
                        messages=self.messages,
                        batch_size=self.batch_size,
                        normalization=self.label_normalization,
                    )
                    scores = calibrated(scores, biases)
                for i, row in zip(scored, scores):
                    results[i] = dspy.Prediction(
                        output=decide(labels[i], row, self.label_decision),
                        label_scores=dict(zip(labels[i], row.tolist())),
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

    @property
    def _stop(self) -> Callable[[str], bool] | None:
        """The local model's stop rule for free-text answers: the end of the answer line."""
        return answer_line_done if self.answer_extraction == "first-line" else None

    def _answer(self, text: str, labels: Sequence[str]) -> str:
        """A free reply as the answer: extracted for prompts without labels (``answer_extraction``).

        Labelled prompts answered freely (``label_scoring=False`` or a server model) keep the reply
        as it is: the task's parser finds the label or rating in it.
        """
        if labels or self.answer_extraction == "none":
            return text
        return extract_answer(text)

    def _server_scored(self, prompt: str, labels: Sequence[str]) -> dspy.Prediction:
        """Label scoring through a server's first-token log-probabilities (:mod:`persona_rag.server`)."""
        try:
            scores = label_log_probs(self.lm, self.messages(prompt), labels)
        except Exception as error:
            raise call_error(error, self.lm) from error
        if scores is None:  # the server gave them for its probe: this answer is broken, not the setting
            raise GenerationError(f"the LLM server returned no log-probabilities for labels {list(labels)}")
        return dspy.Prediction(
            output=decide(labels, np.array(scores), self.label_decision),
            label_scores=dict(zip(labels, scores)),
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
