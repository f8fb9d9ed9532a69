"""The offline default models' names, in a module that imports nothing heavy.

The command line shows them in ``--help``, which must not pay for importing torch.
"""

__all__ = ["DEFAULT_ENCODER", "DEFAULT_ENCODER_ALIASES", "DEFAULT_LM", "DEFAULT_LM_ALIASES"]

DEFAULT_LM = "SmolLM2-135M-Instruct"
DEFAULT_ENCODER = "all-MiniLM-L6-v2"
# Lower-cased names that mean the packaged default (not a hub or directory name).
DEFAULT_LM_ALIASES = frozenset(
    {DEFAULT_LM.lower(), "default", "smollm2", f"huggingfacetb/{DEFAULT_LM.lower()}"}
)
DEFAULT_ENCODER_ALIASES = frozenset(
    {DEFAULT_ENCODER.lower(), f"sentence-transformers/{DEFAULT_ENCODER.lower()}", "default"}
)
