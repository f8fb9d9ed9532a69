"""The offline default models' names, in a module that imports nothing heavy.

The command line shows them in ``--help``, which must not pay for importing torch.
"""

__all__ = ["DEFAULT_ENCODER", "DEFAULT_LM"]

DEFAULT_LM = "SmolLM2-135M-Instruct"
DEFAULT_ENCODER = "all-MiniLM-L6-v2"
