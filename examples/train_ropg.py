"""Tune the dense retriever with the reader's feedback (ROPG-KD, then ROPG-RL) and compare them
with the untuned retriever on held-out questions.

    python examples/train_ropg.py                       # the sample task (with the demo's fine-tuned reader)
    python examples/train_ropg.py --data ../shared/lamp-real/movielens_rating --reader runs/reader/best

Training uses the train split (validation: each user's latest train question); the table is on
the test split. The same runs from the command line: ``persona-rag train --method kd|rl ...``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from optimizers import ROPG_KD, ROPG_RL, ROPGConfig, ROPGKDConfig
from optimizers.demo import example_data
from persona_rag import DenseRetriever, Generator, PersonalizedRAG
from persona_rag.evaluation import evaluate_program, results_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="LaMP-format directory (default: the sample task)")
    parser.add_argument("--reader", help="local reader checkpoint (default: fine-tune the offline model)")
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="checkpoints and data")
    parser.add_argument("--train-examples", type=int, default=96, help="training questions used")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each optimizer")
    parser.add_argument("--tiny", action="store_true", help="a few questions (seconds; numbers meaningless)")
    args = parser.parse_args()

    data = example_data(args.data, out=args.out, tiny=args.tiny, reader=args.reader)
    program = PersonalizedRAG(task=data.task, retriever=DenseRetriever(), generator=Generator(lm=data.reader))
    common = {
        "epochs": 1 if args.tiny else args.epochs,
        "candidates": 8,
        "learning_rate": 1e-4,
        "gradient_accumulation_steps": 1,
        "max_examples": args.train_examples,
        "feedback_cache": args.out / "feedback.sqlite",
        "resume": False,  # a rerun trains afresh (with other settings too); LLM answers stay cached
    }
    optimizers = {
        "ROPG-KD": ROPG_KD(config=ROPGKDConfig(output_dir=args.out / "ropg-kd", **common)),
        "ROPG-RL": ROPG_RL(config=ROPGConfig(output_dir=args.out / "ropg-rl", **common)),
    }
    results = [evaluate_program(program, data.test, name="Dense (untuned)")]
    for name, optimizer in optimizers.items():
        tuned = optimizer.compile(program, trainset=data.fit, valset=data.val)
        results.append(evaluate_program(tuned, data.test, name=name))
    Console().print(results_table(results, title=f"{len(data.test)} held-out test questions"))


if __name__ == "__main__":
    main()
