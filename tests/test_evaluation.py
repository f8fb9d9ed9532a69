"""How evaluation results are shown: the results table."""

from __future__ import annotations

import io

from rich.console import Console

from optimizers.demo.config import ROW_NAMES
from persona_rag.evaluation import EvaluationResult, results_table


def demo_rows() -> list[EvaluationResult]:
    """The demo's rows with its widest figures (three-digit seconds, a success rate, the oracle's
    score)."""
    names = [*ROW_NAMES.values(), "oracle (best member)"]
    return [
        EvaluationResult(
            name=name,
            task="LaMP-3",
            n=64,
            metrics={
                "MAE": 1.1406,
                "RMSE": 1.4948,
                **({"success_rate": 0.5938} if i >= 6 else {}),
                **({"score": 0.9115} if i == 7 else {}),  # the oracle's mean Eval
            },
            seconds=123.4,
        )
        for i, name in enumerate(names)
    ]


def test_the_demo_table_fits_80_columns_one_line_per_row():
    console = Console(width=80, record=True, file=io.StringIO())
    title = "persona-rag demo: sample task, 64 held-out test questions, k=4, reader SmolLM2 (bfloat16)"
    console.print(results_table(demo_rows(), title=title))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    for row in demo_rows():  # each name whole on its line, with its figures and no header cut
        assert any(line.strip().startswith(f"{row.name} ") and "1.1406" in line for line in lines), row.name
    assert any("success_rate" in line and "seconds" in line for line in lines)
    assert not any("…" in line for line in lines)  # every figure whole
    assert any("0.5938" in line and "0.9115" in line for line in lines)
