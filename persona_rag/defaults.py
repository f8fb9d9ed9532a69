"""The offline default models' names and the generator's answer-reading choices, in a module that
imports nothing heavy.

The command line shows them in ``--help``, which must not pay for importing torch.
"""

from typing import Literal

__all__ = [
    "ANSWER_EXTRACTIONS",
    "DEFAULT_ENCODER",
    "DEFAULT_ENCODER_ALIASES",
    "DEFAULT_LABEL_NORMALIZATION",
    "DEFAULT_LM",
    "DEFAULT_LM_ALIASES",
    "DTYPES",
    "DTYPE_CHOICES",
    "LABEL_NORMALIZATIONS",
    "AnswerExtraction",
    "LabelNormalization",
]

DEFAULT_LM = "SmolLM2-135M-Instruct"
DEFAULT_ENCODER = "all-MiniLM-L6-v2"
# Lower-cased names that mean the packaged default (not a hub or directory name).
DEFAULT_LM_ALIASES = frozenset(
    {DEFAULT_LM.lower(), "default", "smollm2", f"huggingfacetb/{DEFAULT_LM.lower()}"}
)
DEFAULT_ENCODER_ALIASES = frozenset(
    {DEFAULT_ENCODER.lower(), f"sentence-transformers/{DEFAULT_ENCODER.lower()}", "default"}
)

# Precisions an in-process model can run at: float32 is the reference; bfloat16 is faster on CPUs
# with AVX-512 BF16 and on GPUs (benchmarks/README.md, "A bfloat16 reader"). ``auto`` (an option
# value, resolved by persona_rag.lm.loading.resolve_dtype) picks bfloat16 where the hardware has it.
DTYPES: tuple[str, ...] = ("float32", "bfloat16")
DTYPE_CHOICES: tuple[str, ...] = ("auto", *DTYPES)

# Label scoring of multi-token labels: the sum of the label's token log-probabilities, or their
# mean per token (the default: measured better on movielens_tagging dev, benchmarks/README.md).
LabelNormalization = Literal["sum", "mean"]
LABEL_NORMALIZATIONS: tuple[LabelNormalization, ...] = ("sum", "mean")
DEFAULT_LABEL_NORMALIZATION: LabelNormalization = "mean"
# Free-text tasks: the answer alone out of the reply (``first-line``), or the whole reply.
AnswerExtraction = Literal["first-line", "none"]
ANSWER_EXTRACTIONS: tuple[AnswerExtraction, ...] = ("first-line", "none")
