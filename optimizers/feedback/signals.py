"""What the LLM's feedback scores: the signals, and which a reader can give.

Beyond the paper's signal (``metric``: Eval of the answer) three more are offered:

* ``likelihood``: the log-likelihood of the gold output with each candidate (one scoring pass, no
  decoding); it ranks candidates even when a weak reader gives the same answer whatever it reads.
* ``metric+likelihood``: Eval stays the primary key and log p(gold) only breaks its ties: the
  score is ``Eval + TIE_BREAK · l``, with ``l`` the example's log-likelihoods min-max scaled to
  [0, 1]. Candidates whose Eval differs by more than ``TIE_BREAK`` keep their order (always on
  LaMP-1/2/3, whose Eval steps are at least 0.25); candidates that tie on Eval (with a weak reader,
  most of them) are ordered by how likely they make the gold. With label scoring the likelihood
  comes from the same pass as the answer, so the signal costs no more than ``metric``.

* ``expected`` (label tasks): the expected Eval of the answer under the reader's distribution over
  the labels, ``sum_l p(l | prompt) · Eval(y, l)``, with ``p`` the softmax of the label scores.
  A candidate that moves probability toward the right label (or a near one, on a rating scale)
  counts even when the argmax answer stays the same, so candidates rarely tie. The label scores
  come with the answer, so it costs no more than ``metric``.

``auto`` (the trainers' default) is ``metric+likelihood`` where the model gives log p(gold) (an
in-process model; a server that returns log-probabilities, on one-character labels: the gold
label's score) and ``metric`` otherwise (:mod:`persona_rag.server` says which signals a server
cannot give). The choice rests on each signal's tie share and rank correlation with the metric of
the generated answer on training feedback (``benchmarks/README.md``, "Signals without ties"): on
both a label task and a generation task ``metric+likelihood`` never tied and ranked candidates
closest to the metric; ``likelihood`` alone costs no decoding but ranked free-text candidates far
less like the metric (Spearman 0.39 against 0.91).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from persona_rag.errors import ConfigError
from persona_rag.server import gives_log_probs, scorable_labels

if TYPE_CHECKING:
    from persona_rag.program import PersonalizedRAG

__all__ = [
    "SIGNALS",
    "SIGNAL_HELP",
    "TIE_BREAK",
    "Signal",
    "likelihood_missing",
    "resolve_signal",
    "tie_advice",
]

Signal = Literal["metric", "likelihood", "metric+likelihood", "expected", "auto"]
SIGNALS: tuple[str, ...] = get_args(Signal)
# The help of ``--signal`` in every command that trains on the LLM's feedback.
SIGNAL_HELP = (
    "what the LLM feedback scores: metric (the paper's Eval), likelihood (log p(gold)), "
    "metric+likelihood (Eval, ties broken by log p(gold)), expected (Eval expected under the "
    "reader's label distribution; label tasks); auto: metric+likelihood for a local model, metric for "
    "a server"
)
# Weight of the scaled log-likelihood in ``metric+likelihood``: below any Eval step of LaMP-1/2/3.
TIE_BREAK = 0.05


def resolve_signal(signal: str, program: PersonalizedRAG) -> str:
    """The concrete signal for ``program`` (see the module docstring for ``auto``); a signal the
    model cannot give (log p(gold), label scores) is refused with what to use instead."""
    if signal not in SIGNALS:
        raise ConfigError(f"signal must be one of {', '.join(SIGNALS)}; got {signal!r}")
    missing = likelihood_missing(program)
    free_text = program.task.kind == "generation"
    if signal == "auto":
        return "metric" if missing else "metric+likelihood"
    if signal == "expected" and (free_text or not program.generator.label_scoring or missing):
        why = "its outputs are free text" if free_text else missing or "label scoring is off"
        raise ConfigError(
            f"the expected signal needs the reader's scores over {program.task.name}'s labels; here {why}. "
            "Use --signal likelihood for free-text tasks, or --signal metric"
        )
    if "likelihood" in signal and missing:
        raise ConfigError(
            f"the {signal} signal needs log p(gold): from an in-process model (Generator(lm=local_lm(...)), "
            f"--model) or from a server that returns log-probabilities for one-character labels; "
            f"here {missing}. Use --signal metric"
        )
    return signal


def tie_advice(program: PersonalizedRAG, signal: str, *more: str) -> str:
    """What to try when every training example's candidates score the same with ``signal``: the
    likelihood signals only where ``program``'s reader can give log p(gold) (a server without
    log-probabilities cannot), a reader that uses its profile, then the caller's ``more``."""
    options, why = [], ""
    if "likelihood" not in signal:
        missing = likelihood_missing(program)
        if missing is None:
            options.append(
                "--signal metric+likelihood or likelihood (log p(gold) still ranks the candidates)"
            )
        else:
            why = f" (the likelihood signals, which could break the ties, need log p(gold); here {missing})"
    options.append("a reader that uses its profile (--model runs/reader/best from persona-rag finetune)")
    options += more
    return f"Use {', '.join(options[:-1])} or {options[-1]}{why}"


def likelihood_missing(program: PersonalizedRAG) -> str | None:
    """Why ``program``'s reader cannot give log p(gold) (``None``: it can; an in-process model always
    can, a server as the gold label's score, :mod:`persona_rag.server`)."""
    if program.generator.local_model is not None:
        return None
    task, generator = program.task, program.generator
    fixed = () if task.labels_pattern else task.labels_for("")  # a pattern's labels vary per input
    if not scorable_labels(fixed):
        return f"{task.name}'s outputs are not one-character labels"
    if not generator.label_scoring or generator.calibrate:
        return "label scoring is off or calibrated"
    if not gives_log_probs(generator.lm):
        return "the LLM server returns no log-probabilities"
    return None
