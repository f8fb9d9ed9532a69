"""``persona-rag demo`` and the data ``examples/`` share with it. One module per concept:

- :mod:`~optimizers.demo.command`: the command, :func:`run_demo`, which runs the stages and writes
  the table, the JSON and the chart.
- :mod:`~optimizers.demo.config`: :class:`DemoConfig` (the sizes), the pool and the row names.
- :mod:`~optimizers.demo.stages`: the stage cache every trained stage goes through.
- :mod:`~optimizers.demo.reader`: :func:`finetune_reader`, the fine-tuned reader.
- :mod:`~optimizers.demo.pool`: :func:`pool_results`, the pool's rows from one pass of answers.
- :mod:`~optimizers.demo.data`: the demo's questions, and :func:`example_data` for ``examples/``.

Only the command's names load torch, when called, so ``persona-rag --help`` stays fast.
"""

from __future__ import annotations

from optimizers.demo.command import DemoResult, add_demo, run_demo
from optimizers.demo.config import DemoConfig
from optimizers.demo.data import ExampleData, example_data
from optimizers.demo.pool import pool_results
from optimizers.demo.reader import finetune_reader

__all__ = [
    "DemoConfig",
    "DemoResult",
    "ExampleData",
    "add_demo",
    "example_data",
    "finetune_reader",
    "pool_results",
    "run_demo",
]
