"""Feedback throughput: persona-rag's batched, cached feedback against two references, one run.

The same prompts (each training question with each of its top-``l`` candidates alone in the
prompt) are answered by

* ``Feedback`` (``optimizers.feedback``) with free generation, greedy, ``--max-new-tokens``;
* a hand-written batched ``model.generate`` over the same chat-formatted prompts: the practical
  ceiling on this machine (goal: ours >= 0.8x its throughput);
* the authors' way: one unbatched ``generate`` call per document (goal: ours >= 3x);
* ``Feedback`` again with label scoring (how persona-rag answers rating/classification tasks);
* ``Feedback`` a second time over a warm cache (goal: under 5% of the first run's time).

    python benchmarks/feedback.py --questions 12 --candidates 8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import torch
from rich.console import Console
from rich.table import Table

from optimizers.feedback import Feedback
from persona_rag import DenseRetriever, Generator, PersonalizedRAG, load_lamp, local_lm
from persona_rag.retrievers import RetrievalResult

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "lamp-real" / "movielens_rating"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="train")
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)

    examples = load_lamp(args.data, args.split, limit=args.questions).examples()
    free = Generator(
        lm=local_lm(), label_scoring=False, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
    )
    program = PersonalizedRAG(task="LaMP-3", retriever=DenseRetriever(), generator=free)
    model = free.local_model
    # The exact prompts Feedback sends: each candidate alone in the prompt.
    task = program.task
    results = program.retriever.batch_search(
        [task.query(e.input) for e in examples],
        [task.documents(e.profile) for e in examples],
        args.candidates,
    )
    prompts = [
        program.build_prompt(e.input, RetrievalResult((hit,)))
        for e, r in zip(examples, results)
        for hit in r.hits
    ]
    texts = [model.render(free.messages(p)) for p in prompts]
    tokenizer = model.tokenizer
    rows: list[tuple[str, float]] = []

    def timed(name: str, fn) -> float:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        rows.append((name, seconds))
        return seconds

    with tempfile.TemporaryDirectory() as tmp:
        feedback = Feedback(
            program=program,
            candidates=args.candidates,
            cache=Path(tmp) / "a.sqlite",
            batch_size=args.batch_size,
            progress=False,
        )
        ours = timed("Feedback, free generation (cold cache)", lambda: feedback.compute(examples))
        warm = timed("Feedback, second run (warm cache)", lambda: feedback.compute(examples))

        def batched_generate() -> None:
            tokenizer.padding_side = "left"
            for start in range(0, len(texts), args.batch_size):
                batch = tokenizer(
                    texts[start : start + args.batch_size],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=False,
                )
                with torch.inference_mode():
                    model.model.generate(
                        **batch,
                        max_new_tokens=args.max_new_tokens,
                        do_sample=False,
                        pad_token_id=tokenizer.pad_token_id,
                    )

        def unbatched_generate() -> None:
            for text in texts:
                batch = tokenizer([text], return_tensors="pt", add_special_tokens=False)
                with torch.inference_mode():
                    model.model.generate(
                        **batch,
                        max_new_tokens=args.max_new_tokens,
                        do_sample=False,
                        pad_token_id=tokenizer.pad_token_id,
                    )

        ceiling = timed("hand-written batched model.generate", batched_generate)
        authors = timed("per-document unbatched generate (authors')", unbatched_generate)

        scored = Generator(lm=local_lm(), batch_size=args.batch_size)
        scoring_program = PersonalizedRAG(task="LaMP-3", retriever=program.retriever, generator=scored)
        scoring = Feedback(
            program=scoring_program,
            candidates=args.candidates,
            cache=Path(tmp) / "b.sqlite",
            batch_size=args.batch_size,
            progress=False,
        )
        timed("Feedback, label scoring (cold cache)", lambda: scoring.compute(examples))

    table = Table(
        title=f"Feedback throughput: {len(prompts)} prompts ({args.questions} questions x {args.candidates} "
        f"candidates), {args.data.name}/{args.split}, {os.cpu_count()} CPUs"
    )
    for column in ("method", "seconds", "prompts/s", "vs Feedback free generation"):
        table.add_column(column, justify="right")
    for name, seconds in rows:
        table.add_row(name, f"{seconds:.2f}", f"{len(prompts) / seconds:.2f}", f"{ours / seconds:.2f}x")
    console = Console(width=160)
    console.print(table)
    console.print(
        f"ours / ceiling throughput: {ceiling / ours:.2f}x (goal >= 0.8x); "
        f"ours / authors' loop: {authors / ours:.2f}x (goal >= 3x); "
        f"warm cache: {100 * warm / ours:.1f}% of the cold run (goal < 5%)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
