"""The no-LLM baseline of rating tasks: answer the user's mean profile rating.

It sets the bar a personalised reader has to clear (issue: "beats the user-mean baseline"):

    python benchmarks/user_mean.py --data ../shared/lamp-real/movielens_rating --split dev --limit 200
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from persona_rag.data import load_lamp

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "lamp-real" / "movielens_rating"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--limit", type=int, default=200)
    args = parser.parse_args(argv)
    split = load_lamp(args.data, args.split, limit=args.limit)
    if split.task.kind != "rating" or split.golds is None:
        raise SystemExit(f"{args.data}: needs a rating task with outputs")
    field = split.task.profile_fields[-1]  # LaMP-3: ("text", "score")
    low, high = split.task.rating_range
    middle = str((low + high) / 2)
    means = [
        statistics.fmean(float(getattr(item, field)) for item in q.profile) if q.profile else float(middle)
        for q in split.questions
    ]
    golds = [split.golds[q.id] for q in split.questions]
    inputs = [q.input for q in split.questions]
    table = Table(title=f"user-mean baseline, {args.data.name}/{args.split} ({len(golds)} questions)")
    for column in ("prediction", "MAE", "RMSE"):
        table.add_column(column, justify="right")
    for name, values in (("mean profile rating", means), ("rounded mean", [round(m) for m in means])):
        metrics = split.task.evaluate([str(v) for v in values], golds, inputs)
        table.add_row(name, f"{metrics['MAE']:.4f}", f"{metrics['RMSE']:.4f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
