"""A PersonalizedRAG step inside a larger DSPy program, tuned with ROPG-KD and a prompt optimizer
in sequence by dspy's BetterTogether.

    python examples/inside_larger_program.py --data ../shared/lamp-real/movielens_rating \
        --reader runs/reader/best
"""

from __future__ import annotations

import argparse
from pathlib import Path

import dspy
from dspy.teleprompt import BetterTogether, LabeledFewShot

from optimizers import ROPG_KD, ROPGKDConfig
from persona_rag import DenseRetriever, Generator, PersonalizedRAG, load_lamp, local_lm


class RateAndExplain(dspy.Module):
    """Predict the user's rating, then explain it in one sentence."""

    def __init__(self, rag: PersonalizedRAG) -> None:
        super().__init__()
        self.rag = rag
        self.explain = dspy.Predict("movie, rating -> explanation")

    def forward(self, input: str, profile: list) -> dspy.Prediction:
        rating = self.rag(input=input, profile=profile)
        explanation = self.explain(movie=self.rag.task.query(input), rating=rating.output).explanation
        return dspy.Prediction(output=rating.output, explanation=explanation, retrieved=rating.ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--reader", default="SmolLM2-135M-Instruct", help="local model name or checkpoint")
    parser.add_argument("--examples", type=int, default=64)
    args = parser.parse_args()

    train = load_lamp(args.data, "train", limit=args.examples).examples()
    dev = load_lamp(args.data, "dev", limit=32).examples()
    lm = local_lm(args.reader)
    program = RateAndExplain(
        PersonalizedRAG(task="LaMP-3", retriever=DenseRetriever(), generator=Generator(lm=lm))
    )
    kd = ROPG_KD(config=ROPGKDConfig(output_dir="runs/example-kd", epochs=2, max_val_examples=16))
    optimizer = BetterTogether(metric=program.rag.task.metric, w=kd, p=LabeledFewShot(k=2))
    with dspy.context(lm=lm):
        compiled = optimizer.compile(program, trainset=train, valset=dev, strategy="w -> p")
        print(compiled(input=dev[0].input, profile=dev[0].profile))
    compiled.save("runs/example-program.json")


if __name__ == "__main__":
    main()
