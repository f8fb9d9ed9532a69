"""Training commands that ``optimizers`` adds to the ``persona-rag`` CLI (entry point group
``persona_rag.commands``), one module per command, and the options they share
(:mod:`~optimizers.cli.options`). Each command's settings are flags built from its config class
(:mod:`persona_rag.config_flags`). Every module imports only argument parsing and those classes at
the top, so ``persona-rag --help`` loads no model library."""

from __future__ import annotations

from optimizers.cli.finetune import add_finetune
from optimizers.cli.report import add_report
from optimizers.cli.select import add_select
from optimizers.cli.train import add_train

__all__ = ["add_finetune", "add_report", "add_select", "add_train"]
