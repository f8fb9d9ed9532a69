"""A trained selector (``persona-rag select``) on a held-out split: its pool, the selector and the
pool's oracle bounds, each row's paired difference from the best pool member, one run.

Every member's prompt is answered once through the feedback cache
(:func:`optimizers.demo.pool_results`), so this costs half the LLM calls of ``persona-rag evaluate
--selector`` (which answers with every member for the member rows and again for the selector's
own program). The generator is built from ``persona-rag evaluate``'s defaults and ``--model``,
as ``persona-rag select`` built it.

    python benchmarks/rspg_split_eval.py --data ../shared/lamp-real/movielens_rating \\
        --model runs/reader-rating/best --selector runs/rspg-post-full/selector.json \\
        --feedback-cache runs/rating-feedback.sqlite --split test --out rspg-test.json
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from optimizers.demo import pool_results
from persona_rag.cli import build_parser
from persona_rag.cli_options import build_program, load_selector, make_console
from persona_rag.data import load_lamp
from persona_rag.evaluation import compare_rows, comparison_table, pool_bounds, results_table, write_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="LaMP-format task directory")
    parser.add_argument("--model", required=True, help="the reader the selector was trained with")
    parser.add_argument("--selector", type=Path, required=True, help="the trained selector.json")
    parser.add_argument("--feedback-cache", type=Path, required=True, help="cache of the LLM's answers")
    parser.add_argument("--split", default="test", help="the held-out split (default: test)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    args = parser.parse_args(argv)

    split = load_lamp(args.data, args.split)
    task, examples = split.task, split.examples()
    options = build_parser().parse_args(["evaluate", "--data", str(args.data), "--model", args.model])
    program = build_program(options, task, "none")
    selector = load_selector(args.selector)
    members = pool_results(program, examples, selector.pool, selector, args.feedback_cache)
    pool = members[: len(selector.pool)]  # the members' rows, then the selector's
    results = [*members, *pool_bounds(task, examples, pool)]
    best = (min if task.lower_is_better else max)(pool, key=lambda r: r.metrics[task.primary_metric]).name
    comparison = compare_rows(task, examples, results, best)
    console = make_console()
    console.print(results_table(results, title=f"{task.name} {args.split} ({len(examples)} questions)"))
    console.print(comparison_table(comparison, best))
    write_results(
        args.out, results, data=str(args.data), split=args.split, model=args.model, paired_against=best,
        paired=comparison,
    )  # fmt: skip
    console.print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
