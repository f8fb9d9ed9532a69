"""The server path against the in-process model, one run: answer agreement and feedback throughput.

``transformers serve`` (the ``serve`` extra) runs the same local SmolLM2 weights on loopback
(:func:`persona_rag.server.transformers_serve`), and both generators answer the same sample-task
prompts greedily, free generation, at most ``--max-new-tokens`` tokens:

* agreement: the share of ``--prompts`` prompts whose answers are identical (stripped), and the
  share whose parsed rating is the same;
* feedback throughput: ``Feedback`` (signal ``metric``) over ``--questions`` x ``--candidates``
  prompts, in-process (batched) and through the server at each ``--concurrency``, each with an
  empty cache; prompts/s and the ratio to in-process.

    python benchmarks/server_path.py --prompts 20 --questions 2 --candidates 4 --concurrency 1,4,8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from rich.console import Console
from rich.table import Table

from optimizers.feedback import Feedback
from persona_rag import Generator, PersonalizedRAG, load_lamp, local_lm
from persona_rag.data import make_sample_task
from persona_rag.lm import resolve_model
from persona_rag.retrievers import make_retriever
from persona_rag.server import server_lm, transformers_serve


def _program(generator: Generator, task: str) -> PersonalizedRAG:
    return PersonalizedRAG(
        task=task, retriever=make_retriever("bm25"), generator=generator, k=1, max_input_tokens=256
    )


def _feedback_rate(program: PersonalizedRAG, examples: list, candidates: int, cache: Path) -> float:
    feedback = Feedback(program=program, candidates=candidates, cache=cache, signal="metric", progress=False)
    started = time.perf_counter()
    feedback.compute(examples)
    return feedback.computed / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=20, help="prompts compared for agreement")
    parser.add_argument("--questions", type=int, default=2, help="feedback questions")
    parser.add_argument("--candidates", type=int, default=4, help="feedback candidates per question")
    parser.add_argument("--concurrency", default="1,4,8", help="server concurrency levels")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--start-timeout", type=float, default=900, help="seconds for the server to start")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="server-path-"))
    split = load_lamp(make_sample_task(work / "sample"), "train")
    examples = split.examples()
    options = {"label_scoring": False, "answer_extraction": "none", "max_new_tokens": args.max_new_tokens}
    local = _program(
        Generator(lm=local_lm(max_tokens=args.max_new_tokens), batch_size=8, **options), split.task
    )
    model = resolve_model("default")
    console = Console()
    with transformers_serve(model, timeout=args.start_timeout, log=work / "serve.log") as api_base:
        lm = server_lm(f"openai/{model}", api_base=api_base, api_key="none", max_tokens=args.max_new_tokens,
                       timeout=600)  # fmt: skip
        lm.cache = False  # every run asks the server
        remote = _program(Generator(lm=lm, **options), split.task)

        # Agreement: the same prompts (each question with its top BM25 item), answered by both.
        chosen = examples[: args.prompts]
        results = local.batch_retrieve([e.input for e in chosen], [e.profile for e in chosen])
        prompts = [local.build_prompt(e.input, r) for e, r in zip(chosen, results)]
        labels = [split.task.labels_for(e.input) for e in chosen]
        mine = [p.output.strip() for p in local.generator.generate_batch(prompts, labels)]
        theirs = [p.output.strip() for p in remote.generator.generate_batch(prompts, labels)]
        same = sum(a == b for a, b in zip(mine, theirs))
        parsed = [
            split.task.parse(a, e.input) == split.task.parse(b, e.input)
            for a, b, e in zip(mine, theirs, chosen)
        ]
        console.print(
            f"agreement on {len(prompts)} prompts ({args.max_new_tokens} new tokens, greedy): "
            f"identical {same}/{len(prompts)} ({same / len(prompts):.0%}), "
            f"same parsed rating {sum(parsed)}/{len(prompts)} ({sum(parsed) / len(prompts):.0%})"
        )
        for a, b in list(zip(mine, theirs))[:5]:
            console.print(f"  in-process {a!r:40} server {b!r}")

        # Feedback throughput, each run on an empty cache.
        fed = examples[: args.questions]
        table = Table(
            title=f"feedback, {args.questions} questions x {args.candidates} candidates "
            f"({args.max_new_tokens} new tokens)"
        )
        for column in ("generator", "prompts/s", "vs in-process"):
            table.add_column(column, justify="right")
        base = _feedback_rate(local, fed, args.candidates, work / "local.sqlite")
        table.add_row("in-process (batched)", f"{base:.3f}", "1.00x")
        for level in (int(x) for x in args.concurrency.split(",")):
            remote.generator.concurrency = level
            rate = _feedback_rate(remote, fed, args.candidates, work / f"server-{level}.sqlite")
            table.add_row(f"server, concurrency {level}", f"{rate:.3f}", f"{rate / base:.2f}x")
        console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
