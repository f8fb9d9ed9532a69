"""What fine-tuning the reader does on a generation task: zero-shot against fine-tuned, same items.

Takes two ``persona-rag evaluate --out`` results files of the same split and retrievers, one per
reader, and prints per retriever both readers' metrics, the ratio of their primary metric and the
paired difference (95% bootstrap interval, randomisation p-value) of fine-tuned minus zero-shot
on the same questions. A table of small results (no predictions) goes to ``--out``.

    persona-rag evaluate --data ../shared/lamp-real/numpy_commit_subjects --split test \\
        --retriever none,bm25,dense --dtype bfloat16 --max-new-tokens 32 --out runs/zero-shot-test.json
    persona-rag evaluate ... --model runs/reader-numpy/best --out runs/finetuned-test.json
    python benchmarks/reader_effect.py --data ../shared/lamp-real/numpy_commit_subjects \\
        --zero-shot runs/zero-shot-test.json --fine-tuned runs/finetuned-test.json \\
        --out benchmarks/results/numpy_commit_subjects/reader/effect-test.json
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
from persona_rag.io import atomic_write_json
from persona_rag.significance import format_difference, paired_predictions
from persona_rag.tasks import get_task


def rows(path: Path) -> dict[str, dict]:
    """The retriever rows of a results file (oracle rows left out), by name."""
    results = json.loads(path.read_text(encoding="utf-8"))["results"]
    return {r["name"]: r for r in results if "predictions" in r and not r["name"].startswith("oracle")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the task folder both runs read")
    parser.add_argument("--zero-shot", type=Path, required=True, help="results of the zero-shot reader")
    parser.add_argument("--fine-tuned", type=Path, required=True, help="results of the fine-tuned reader")
    parser.add_argument("--out", type=Path, help="where to keep the comparison (JSON)")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)

    header = json.loads(args.zero_shot.read_text(encoding="utf-8"))
    task = get_task(header["task"])
    inputs = {q.id: q.input for q in load_lamp(args.data, header["split"], task=task)}
    zero, tuned = rows(args.zero_shot), rows(args.fine_tuned)
    primary = task.primary_metric
    summary: dict = {"task": task.name, "split": header["split"], "retrievers": {}}
    print(f"{task.name} {header['split']}: fine-tuned minus zero-shot, paired on the same questions")
    for name in (n for n in zero if n in tuned):
        n, tested = paired_predictions(
            task, inputs, tuned[name]["predictions"], zero[name]["predictions"], resamples=args.resamples
        )
        before, after = zero[name]["metrics"], tuned[name]["metrics"]
        ratio = after[primary] / before[primary] if before[primary] else float("inf")
        summary["retrievers"][name] = {
            "n": n,
            "zero_shot": before,
            "fine_tuned": after,
            "ratio": ratio,
            "difference": {metric: asdict(diff) for metric, diff in tested.items()},
        }
        cells = ", ".join(f"{m} {format_difference(asdict(d))}" for m, d in tested.items())
        print(f"{name:>6}: {primary} {before[primary]:.3f} -> {after[primary]:.3f} ({ratio:.2f}x); {cells}")
    if args.out:
        atomic_write_json(args.out, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
