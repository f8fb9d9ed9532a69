"""Two ``persona-rag report`` runs, column against column, paired on the same questions.

A report tests its columns against one another within the run; comparing a setting across runs
(the selectors' objective, a signal) needs the same column of two runs on the same questions. Reads
each run's ``predictions-<split>.json`` and ``report.json``, and prints per column both scores and
the paired difference after minus before (95% bootstrap interval, randomisation p-value):

    python benchmarks/compare_reports.py --data ../shared/lamp-real/numpy_commit_subjects \\
        --split test --before runs/report-numpy-full --after runs/report-numpy-expected \\
        --columns RSPG-Pre,RSPG-Post \\
        --out benchmarks/results/numpy_commit_subjects/objectives/rspg-expected-vs-distill-test.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persona_rag.data import load_lamp
from persona_rag.errors import DataError
from persona_rag.io import atomic_write_json
from persona_rag.significance import format_difference, paired_predictions
from persona_rag.tasks import get_task


def predictions(run: Path, split: str) -> dict[str, list[dict]]:
    """Every column's answers of ``run`` on ``split``, by column name."""
    path = run / f"predictions-{split}.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; run persona-rag report with --splits {split} --out {run}")
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the task folder both runs read")
    parser.add_argument("--split", default="test", help="the reported split both runs answered")
    parser.add_argument("--before", type=Path, required=True, help="the first report's --out folder")
    parser.add_argument("--after", type=Path, required=True, help="the second report's --out folder")
    parser.add_argument("--columns", required=True, help="comma-separated column names, e.g. RSPG-Post")
    parser.add_argument("--out", type=Path, help="where to keep the comparison (JSON)")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)

    task = get_task(json.loads((args.after / "report.json").read_text(encoding="utf-8"))["task"])
    inputs = {q.id: q.input for q in load_lamp(args.data, args.split, task=task)}
    before, after = predictions(args.before, args.split), predictions(args.after, args.split)
    summary: dict = {"task": task.name, "split": args.split}
    summary |= {"before": str(args.before), "after": str(args.after)}
    print(f"{task.name} {args.split}: {args.after} minus {args.before}, paired on the same questions")
    for column in args.columns.split(","):
        if column not in before or column not in after:
            raise DataError(f"column {column!r} is not in both runs' predictions-{args.split}.json")
        n, tested = paired_predictions(task, inputs, after[column], before[column], resamples=args.resamples)
        summary[column] = {"n": n, **{metric: asdict(diff) for metric, diff in tested.items()}}
        cells = ", ".join(f"{m} {format_difference(asdict(d))}" for m, d in tested.items())
        print(f"{column} (n = {n}): {cells}")
    if args.out:
        atomic_write_json(args.out, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
