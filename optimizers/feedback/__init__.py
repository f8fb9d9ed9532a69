"""LLM feedback per (input, candidate document or retriever): the costly signal ROPG, Set-PL and
RSPG learn from. One module per concept:

- :mod:`~optimizers.feedback.signals`: what the feedback scores (``metric``, ``likelihood``,
  ``metric+likelihood``, ``expected``, ``auto``) and which signals a reader can give.
- :mod:`~optimizers.feedback.records`: :class:`CandidateFeedback` and :class:`PoolFeedback`, the
  rows the trainers read.
- :mod:`~optimizers.feedback.cache`: :class:`FeedbackCache`, the SQLite file of answers every stage
  shares.
- :mod:`~optimizers.feedback.sharding`: which process of a launch answers which missing prompt.
- :mod:`~optimizers.feedback.compute`: :class:`Feedback`, the prompts per candidate, answered and
  scored.
- :mod:`~optimizers.feedback.config`: :class:`FeedbackTrainingConfig`, the settings of the trainers
  that learn from it.
"""

from __future__ import annotations

from persona_rag.lazy import lazy_exports

# Imported on first use: computing feedback loads torch and dspy, and the commands build their flags
# from FeedbackTrainingConfig and the signals while ``persona-rag --help`` must not wait for them.
_EXPORTS = {
    "optimizers.feedback.cache": ("FeedbackCache",),
    "optimizers.feedback.compute": ("Feedback",),
    "optimizers.feedback.config": ("FeedbackTrainingConfig",),
    "optimizers.feedback.records": ("CandidateFeedback", "PoolFeedback", "carries_preference"),
    "optimizers.feedback.signals": (
        "SIGNALS",
        "TIE_BREAK",
        "Signal",
        "likelihood_missing",
        "resolve_signal",
        "tie_advice",
    ),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)

__getattr__, __dir__ = lazy_exports("optimizers.feedback", _EXPORTS, globals())
