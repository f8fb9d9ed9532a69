"""The training side every optimizer shares. One module per concept:

- :mod:`~optimizers.training.config`: :class:`TrainingConfig`, the settings every trainer shares,
  and the check of the ``compile`` arguments none of them use.
- :mod:`~optimizers.training.loop`: :class:`Trainer`, the loop (warm-up, clipping, accumulation,
  early stopping, sharing a step over a launch's processes), and :class:`TrainingResult`.
- :mod:`~optimizers.training.state`: the resume state, loaded without running code.
- :mod:`~optimizers.training.validation`: :func:`validation_scores`, the score a checkpoint is
  chosen by.

The training curves are drawn by :mod:`optimizers.plots`.
"""

from __future__ import annotations

from persona_rag.lazy import lazy_exports

# Imported on first use: the loop loads torch, and the commands build their flags from
# TrainingConfig while ``persona-rag --help`` must not wait for it.
_EXPORTS = {
    "optimizers.training.config": ("TrainingConfig", "config_dict", "refuse_unused_compile_arguments"),
    "optimizers.training.loop": ("Trainer", "TrainingResult"),
    "optimizers.training.validation": ("validation_scores",),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)

__getattr__, __dir__ = lazy_exports("optimizers.training", _EXPORTS, globals())
