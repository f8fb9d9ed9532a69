"""Learn which retriever to trust per input (RSPG-Post) and use the result as a program.

    python examples/rspg_pipeline.py                    # the sample task (with the demo's fine-tuned reader)
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
from optimizers.demo import example_data
from persona_rag import Generator, PersonalizedRAG, Selector
from persona_rag.evaluation import evaluate_program, pool_bounds, results_table, scored_selection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="LaMP-format directory (default: the sample task)")
    parser.add_argument("--reader", help="local reader checkpoint (default: fine-tune the offline model)")
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="checkpoints and data")
    parser.add_argument("--train-examples", type=int, default=96, help="training questions used")
    parser.add_argument("--epochs", type=int, default=4, help="selector epochs")
    parser.add_argument("--tiny", action="store_true", help="a few questions (seconds; numbers meaningless)")
    args = parser.parse_args()

    data = example_data(args.data, out=args.out, tiny=args.tiny, reader=args.reader)
    program = PersonalizedRAG(
        task=data.task,
        generator=Generator(lm=data.reader),
        selector=Selector(pool=["none", "recency", "bm25", "dense"], mode="post"),
    )
    optimizer = RSPG(
        config=RSPGConfig(
            output_dir=args.out / "rspg-post",
            epochs=1 if args.tiny else args.epochs,
            learning_rate=1e-4,
            gradient_accumulation_steps=1,
            max_examples=args.train_examples,
            feedback_cache=args.out / "feedback.sqlite",
            resume=False,  # a rerun trains afresh (with other settings too); LLM answers stay cached
            trainable_layers=2,  # the selector encoder's last 2 of 6 layers: half the step time
            gradient_checkpointing=False,  # frozen lower layers keep no activations anyway
        )
    )
    tuned = optimizer.compile(program, trainset=data.fit, valset=data.val)
    tuned.save(str(args.out / "rspg-post" / "program.json"))  # the selector checkpoint travels with it

    example = data.test[0]
    prediction = tuned(input=example.input, profile=example.profile)
    print(f"answer {prediction.output!r} (gold {example.output}) from {prediction.retriever}")

    members = []
    for name, retriever in tuned.selector.pool.items():
        single = PersonalizedRAG(task=data.task, retriever=retriever, generator=tuned.generator)
        members.append(evaluate_program(single, data.test, name=name))
    selected = scored_selection(
        data.task, data.test, members, evaluate_program(tuned, data.test, name="RSPG-Post")
    )
    rows = [*members, selected, *pool_bounds(data.task, data.test, members)]
    Console().print(results_table(rows, title=f"{len(data.test)} held-out test questions"))


if __name__ == "__main__":
    main()
