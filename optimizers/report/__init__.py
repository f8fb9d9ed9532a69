"""The paper's comparison on one task directory: Table 3 (plus Tables 4 and 5) with paired
significance, as Markdown, a PNG chart and JSON. One module per concept:

- :mod:`~optimizers.report.config`: :class:`ReportConfig`, the budget and settings.
- :mod:`~optimizers.report.run`: :func:`run_report`, which trains every row, answers every reported
  question and scores the columns under the protocol a result needs.
- :mod:`~optimizers.report.results`: Table 3's columns, :class:`SplitReport` and :class:`Report`.
- :mod:`~optimizers.report.tables`: the Markdown tables, the chart and the files a report writes.
"""

from __future__ import annotations

from persona_rag.lazy import lazy_exports

# Imported on first use: running the report loads dspy and torch, and ``persona-rag report`` builds
# its flags from ReportConfig while ``--help`` must not wait for them.
_EXPORTS = {
    "optimizers.report.config": ("ReportConfig",),
    "optimizers.report.results": (
        "COLUMNS",
        "FIXED_COLUMNS",
        "ROPG_START",
        "SET_COLUMN",
        "SET_RIVAL",
        "Report",
        "SplitReport",
    ),
    "optimizers.report.run": ("run_report",),
    "optimizers.report.tables": ("markdown_table", "write_report"),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)

__getattr__, __dir__ = lazy_exports("optimizers.report", _EXPORTS, globals())
