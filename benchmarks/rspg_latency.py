"""Per-input latency of RSPG-Post against a single-retriever pipeline, in one run.

RSPG-Post answers the prompt of every retriever in its pool before choosing, so a naive
implementation costs about ``pool size`` times a single pipeline. persona-rag answers the pool's
prompts as one batch (goal: RSPG-Post / single < pool size). Measured per input, one call at a
time (``program(input=..., profile=...)``), on the same questions, each pipeline's second pass
(profile caches warm for all of them):

* single: PersonalizedRAG with BM25;
* RSPG-Pre: selector over the pool, then one answer;
* RSPG-Post: the pool's prompts answered as one batch, then the selector;
* RSPG-Post, unbatched: the same pool answered one prompt at a time (what batching saves).

    python benchmarks/rspg_latency.py --questions 24
    python benchmarks/rspg_latency.py --questions 24 --free-generation --max-new-tokens 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from rich.console import Console
from rich.table import Table

from persona_rag import Generator, PersonalizedRAG, Selector, load_lamp, local_lm
from persona_rag.cli_options import named_retriever
from persona_rag.cli_types import retriever_list, spec_name
from persona_rag.retrievers import BM25Retriever

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "lamp-real" / "movielens_rating"


def per_input_seconds(program: PersonalizedRAG, examples: list, answer=None) -> list[float]:
    """Wall time of each input's call; ``answer`` replaces the program call when given."""
    times = []
    for example in examples:
        start = time.perf_counter()
        if answer is None:
            program(input=example.input, profile=example.profile)
        else:
            answer(example)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument(
        "--model", default="SmolLM2-135M-Instruct", help="the reader (local name or checkpoint)"
    )
    parser.add_argument(
        "--pool",
        type=retriever_list,
        default=["none", "recency", "bm25", "dense"],
        help="pool specs; add tuned encoders as name=DIR (e.g. ropg-kd=runs/ropg-kd/best)",
    )
    parser.add_argument("--free-generation", action="store_true")
    parser.add_argument("--max-new-tokens", type=int, default=4)
    args = parser.parse_args(argv)

    examples = load_lamp(args.data, args.split, limit=args.questions).examples()
    generator = Generator(
        lm=local_lm(args.model, max_tokens=args.max_new_tokens),
        label_scoring=not args.free_generation,
        max_new_tokens=args.max_new_tokens,
    )
    pool = {spec_name(spec): named_retriever(spec, "all-MiniLM-L6-v2") for spec in args.pool}
    task = load_lamp(args.data, args.split, limit=1).task
    single = PersonalizedRAG(task=task, retriever=BM25Retriever(), generator=generator)
    pre = PersonalizedRAG(task=task, generator=generator, selector=Selector(pool=pool, mode="pre"))
    post = PersonalizedRAG(task=task, generator=generator, selector=Selector(pool=pool, mode="post"))

    def post_unbatched(example) -> None:
        """RSPG-Post without the batch: each member's prompt answered by its own call."""
        prompts = []
        for retriever in pool.values():
            result = post.retrieve(example.input, example.profile, retriever=retriever)
            prompts.append(post.build_prompt(example.input, result))
        outputs = [post._generate([example.input], [result], [prompt])[0].output for prompt in prompts]
        post.selector.batch_select([prompts], [outputs])

    runs = {
        "single (BM25)": (single, None),
        "RSPG-Pre": (pre, None),
        "RSPG-Post (pool batched)": (post, None),
        "RSPG-Post (pool unbatched)": (post, post_unbatched),
    }
    # A first pass of every pipeline over the same questions loads the models and fills the
    # profile caches (embeddings, BM25 indexes), so no pipeline pays for another's cold start and
    # the timed pass compares generation and selection.
    for program, answer in runs.values():
        per_input_seconds(program, examples, answer)
    seconds = {name: per_input_seconds(program, examples, answer) for name, (program, answer) in runs.items()}

    base = statistics.mean(seconds["single (BM25)"])
    mode = "free generation" if args.free_generation else "label scoring"
    table = Table(
        title=f"per-input latency, {len(examples)} questions of {args.data.name}/{args.split}, "
        f"pool of {len(pool)} ({mode}, {args.model})"
    )
    for column in ("pipeline", "mean ms", "median ms", "x single"):
        table.add_column(column, justify="right")
    for name, values in seconds.items():
        mean = statistics.mean(values)
        table.add_row(
            name, f"{1000 * mean:.0f}", f"{1000 * statistics.median(values):.0f}", f"{mean / base:.2f}"
        )
    Console().print(table)
    ratio = statistics.mean(seconds["RSPG-Post (pool batched)"]) / base
    Console().print(f"RSPG-Post / single = {ratio:.2f} (goal: < pool size {len(pool)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
