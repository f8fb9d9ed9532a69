"""The paper's comparison on one task directory: Table 3 (plus Tables 4 and 5) with paired
significance, as Markdown, a PNG chart and JSON. One module per concept:

- :mod:`~optimizers.report.run`: :func:`run_report` and :class:`ReportConfig`, which train every
  row, answer every reported question and score the columns under the protocol a result needs.
- :mod:`~optimizers.report.results`: Table 3's columns, :class:`SplitReport` and :class:`Report`.
- :mod:`~optimizers.report.tables`: the Markdown tables, the chart and the files a report writes.
"""

from __future__ import annotations

from optimizers.report.results import (
    COLUMNS,
    FIXED_COLUMNS,
    ROPG_START,
    SET_COLUMN,
    SET_RIVAL,
    Report,
    SplitReport,
)
from optimizers.report.run import ReportConfig, run_report
from optimizers.report.tables import markdown_table, write_report

__all__ = [
    "COLUMNS",
    "FIXED_COLUMNS",
    "ROPG_START",
    "SET_COLUMN",
    "SET_RIVAL",
    "Report",
    "ReportConfig",
    "SplitReport",
    "markdown_table",
    "run_report",
    "write_report",
]
