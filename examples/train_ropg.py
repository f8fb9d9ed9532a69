"""Tune the dense retriever with the reader's metric (ROPG-KD, then ROPG-RL) and compare.

    python examples/train_ropg.py --data ../shared/lamp-real/movielens_rating --reader runs/reader/best

The same runs from the command line: ``persona-rag train --method kd|rl --data DIR --model READER``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from optimizers import ROPG_KD, ROPG_RL, ROPGConfig, ROPGKDConfig
from persona_rag import DenseRetriever, Generator, PersonalizedRAG, load_lamp, local_lm
from persona_rag.evaluation import evaluate_program, results_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--reader", default="SmolLM2-135M-Instruct", help="local model name or checkpoint")
    parser.add_argument("--train-examples", type=int, default=200)
    parser.add_argument("--dev-examples", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    train = load_lamp(args.data, "train").examples()[: args.train_examples]
    dev = load_lamp(args.data, "dev", limit=args.dev_examples).examples()
    program = PersonalizedRAG(
        task="LaMP-3", retriever=DenseRetriever(), generator=Generator(lm=local_lm(args.reader))
    )
    common = {
        "epochs": args.epochs,
        "candidates": 8,
        "gradient_accumulation_steps": 2,
        "max_val_examples": 50,
    }
    tuned = {
        "ROPG-KD": ROPG_KD(config=ROPGKDConfig(output_dir="runs/example-kd", **common)),
        "ROPG-RL": ROPG_RL(config=ROPGConfig(output_dir="runs/example-rl", **common)),
    }
    results = [evaluate_program(program, dev, name="dense (untuned)")]
    for name, optimizer in tuned.items():
        compiled = optimizer.compile(program, trainset=train, valset=dev[:50])
        results.append(evaluate_program(compiled, dev, name=name))
    from rich.console import Console

    Console().print(results_table(results, title=f"{args.data.name} dev, reader {args.reader}"))


if __name__ == "__main__":
    main()
