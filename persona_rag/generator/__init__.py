"""The generator: a task prompt in, the user's answer out, through any ``dspy.LM``. One module per
concept:

- :mod:`~persona_rag.generator.routing`: :class:`Generator`, which model answers and which path
  each prompt takes (local label scoring or batched generation, server label scoring, DSPy).
- :mod:`~persona_rag.generator.adapter`: the signature, and :class:`PromptAdapter`, which sends a
  LaMP prompt as it is.
- :mod:`~persona_rag.generator.predict`: :class:`SafePredict`, a predictor whose LM is saved as data.
- :mod:`~persona_rag.generator.labels`: the decision over label scores, and calibration.
- :mod:`~persona_rag.generator.extraction`: :func:`extract_answer`, the answer alone out of a reply.
"""

from __future__ import annotations

from persona_rag.defaults import ANSWER_EXTRACTIONS, DEFAULT_LABEL_NORMALIZATION
from persona_rag.generator.adapter import PersonalizedAnswer, PromptAdapter
from persona_rag.generator.extraction import extract_answer
from persona_rag.generator.predict import SafePredict
from persona_rag.generator.routing import Generator

__all__ = [
    "ANSWER_EXTRACTIONS",
    "DEFAULT_LABEL_NORMALIZATION",
    "Generator",
    "PersonalizedAnswer",
    "PromptAdapter",
    "SafePredict",
    "extract_answer",
]
