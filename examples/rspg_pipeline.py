"""Learn which retriever to trust per input (RSPG-Post) and use the result as a program.

    python examples/rspg_pipeline.py --data ../shared/lamp-real/movielens_rating --reader runs/reader/best

The selector chooses among no retrieval, recency, BM25 and dense retrieval; add ROPG-tuned
encoders to the pool as ``DenseRetriever(encoder="runs/ropg-kd/best")``. The whole comparison
(ROPG and RSPG, Table 3 of the paper) is one command: ``persona-rag report --data DIR --model READER``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from optimizers import RSPG, RSPGConfig
from persona_rag import Generator, PersonalizedRAG, Selector, load_lamp, local_lm
from persona_rag.evaluation import evaluate_program, results_table, scored_selection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--reader", default="SmolLM2-135M-Instruct", help="local model name or checkpoint")
    parser.add_argument("--train-examples", type=int, default=120)
    parser.add_argument("--dev-examples", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    split = load_lamp(args.data, "train")
    train, val = split.examples()[: args.train_examples], split.examples()[-50:]
    dev = load_lamp(args.data, "dev", limit=args.dev_examples).examples()
    program = PersonalizedRAG(
        task=split.task,
        generator=Generator(lm=local_lm(args.reader)),
        selector=Selector(pool=["none", "recency", "bm25", "dense"], mode="post"),
    )
    optimizer = RSPG(
        config=RSPGConfig(
            output_dir="runs/example-rspg-post",
            epochs=args.epochs,
            learning_rate=5e-5,
            gradient_accumulation_steps=2,
        )
    )
    tuned = optimizer.compile(program, trainset=train, valset=val)
    tuned.save("runs/example-rspg-post/program.json")  # the selector checkpoint travels with the program

    prediction = tuned(input=dev[0].input, profile=dev[0].profile)
    print(f"answer {prediction.output!r} from {prediction.retriever}; scores {prediction.selection_scores}")

    members = []
    for name, retriever in tuned.selector.pool.items():
        single = PersonalizedRAG(task=split.task, retriever=retriever, generator=tuned.generator)
        members.append(evaluate_program(single, dev, name=name))
    selected = scored_selection(split.task, dev, members, evaluate_program(tuned, dev, name="RSPG-Post"))
    Console().print(results_table([*members, selected], title=f"{args.data.name} dev, reader {args.reader}"))


if __name__ == "__main__":
    main()
