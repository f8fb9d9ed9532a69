"""Training-side DSPy optimizers for persona-rag programs.

This package changes weights (retrievers, selectors, readers) using the LLM's metric as the signal.
It imports ``persona_rag``; ``persona_rag`` never imports it.
"""

__all__: list[str] = []
