"""Every chart the training side draws, and the one module that imports matplotlib.

matplotlib takes a second to import and wants a display unless told otherwise, so it is loaded
here on first use with its file-only ``Agg`` backend, and each chart comes back as PNG bytes that
the caller writes atomically (a chart is never left half-written beside a finished run). Callers
decide what a chart shows (rows, colours, titles); this module decides how it is drawn, so the
demo's chart, the report's panels and the training curves share one way of saving a figure.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["bar_chart", "curves", "panel_chart"]


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only backend: charts are written, never shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Figure) -> bytes:
    """The figure laid out and saved as PNG bytes, then closed (pyplot keeps every open figure)."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    return buffer.getvalue()


def bar_chart(
    names: Sequence[str],
    values: Sequence[float],
    *,
    colours: Sequence[str],
    title: str,
    ylabel: str,
    reference: tuple[float, str] | None = None,
) -> bytes:
    """One bar per name, labelled with its value, and an optional dashed ``(value, label)`` line
    that no bar is (the demo's oracle over the pool)."""
    fig, ax = _pyplot().subplots(figsize=(7.5, 3.4))
    bars = ax.bar(list(names), list(values), color=list(colours))
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    if reference is not None:
        value, label = reference
        ax.axhline(value, color="#55a868", linestyle="--", linewidth=1.2, label=label)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def panel_chart(
    panels: Sequence[tuple[str, Mapping[str, float]]], *, colour: Callable[[str], str], title: str
) -> bytes:
    """One panel per ``(panel title, {column: value})``, side by side, one bar per column coloured
    by ``colour(column)`` (the report's splits and metrics)."""
    fig, axes = _pyplot().subplots(1, len(panels), figsize=(6 * len(panels), 3.8), squeeze=False)
    for ax, (panel, bars) in zip(axes[0], panels):
        columns = list(bars)
        drawn = ax.bar(columns, [bars[c] for c in columns], color=[colour(c) for c in columns])
        ax.bar_label(drawn, fmt="%.3f", fontsize=7)
        ax.set_title(panel)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return _png(fig)


def curves(history: Sequence[Mapping[str, float]], *, title: str = "") -> bytes:
    """Training curves: one panel per recorded quantity (all but ``epoch`` and ``step``) against
    the epoch."""
    keys = [k for k in dict.fromkeys(k for row in history for k in row) if k not in ("epoch", "step")]
    fig, axes = _pyplot().subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(row["epoch"], row[key]) for row in history if key in row]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _png(fig)
