"""A PersonalizedRAG step inside a larger DSPy program, tuned with ROPG-KD and a prompt optimizer
in sequence by dspy's BetterTogether.

    python examples/inside_larger_program.py            # the sample task (with the demo's fine-tuned reader)
    python examples/inside_larger_program.py --data ../shared/lamp-real/movielens_rating \
        --reader runs/reader/best

The outer program rates a movie for a user (the personalised step) and then explains the rating
(a plain ``dspy.Predict``). BetterTogether requires every predictor to have its LM set
(``program.set_lm``), and it logs a failed step and carries on; this example checks that every
step ran and exits with an error otherwise. The effect is shown where it can be judged: each
candidate program's personalised step on the held-out test questions (ROPG-KD with the settings
of ``examples/train_ropg.py``, whose LLM feedback it reuses through the shared cache).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dspy
from dspy.teleprompt import BetterTogether, LabeledFewShot
from dspy.utils.exceptions import AdapterParseError
from rich.console import Console

from optimizers import ROPG_KD, ROPGKDConfig
from optimizers.demo import example_data
from persona_rag import DenseRetriever, Generator, PersonalizedRAG
from persona_rag.evaluation import evaluate_program, results_table


class RateAndExplain(dspy.Module):
    """Predict the user's rating, then explain it in one sentence."""

    def __init__(self, rag: PersonalizedRAG) -> None:
        super().__init__()
        self.rag = rag
        self.explain = dspy.Predict("movie, rating -> explanation")

    def forward(self, input: str, profile: list | None = None, user_id: str | None = None) -> dspy.Prediction:
        rating = self.rag(input=input, profile=profile, user_id=user_id)
        try:
            explanation = self.explain(movie=self.rag.task.query(input), rating=rating.output).explanation
        except AdapterParseError:  # the 135M offline reader often ignores DSPy's output format
            explanation = "(no explanation: the reader's reply did not follow DSPy's output format)"
        return dspy.Prediction(output=rating.output, explanation=explanation, retrieved=rating.ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="LaMP-format directory (default: the sample task)")
    parser.add_argument("--reader", help="local reader checkpoint (default: fine-tune the offline model)")
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="checkpoints and data")
    parser.add_argument("--train-examples", type=int, default=96, help="training questions used")
    parser.add_argument("--epochs", type=int, default=3, help="ROPG-KD epochs")
    parser.add_argument("--tiny", action="store_true", help="a few questions (seconds; numbers meaningless)")
    args = parser.parse_args()

    data = example_data(args.data, out=args.out, tiny=args.tiny, reader=args.reader)
    program = RateAndExplain(
        PersonalizedRAG(task=data.task, retriever=DenseRetriever(), generator=Generator(lm=data.reader))
    )
    program.set_lm(data.reader)  # BetterTogether needs an LM on every predictor
    kd = ROPG_KD(
        config=ROPGKDConfig(
            output_dir=args.out / "inside-kd",
            epochs=1 if args.tiny else args.epochs,
            candidates=8,
            learning_rate=1e-4,
            gradient_accumulation_steps=1,
            max_examples=args.train_examples,
            feedback_cache=args.out / "feedback.sqlite",
            resume=False,  # a rerun trains afresh (with other settings too); LLM answers stay cached
        )
    )
    optimizer = BetterTogether(metric=data.task.metric, w=kd, p=LabeledFewShot(k=2))
    trainset = data.fit[: args.train_examples]
    compiled = optimizer.compile(program, trainset=trainset, valset=data.val, strategy="w -> p")
    ran = [candidate["strategy"] for candidate in compiled.candidate_programs]
    if "w -> p" not in ran:
        sys.exit(f"a BetterTogether step failed (strategies that ran: {ran}); see the log above")
    results = []
    for candidate in compiled.candidate_programs:
        name = candidate["strategy"] or "original"
        print(f"strategy {name!r}: validation score {candidate['score']}")
        results.append(evaluate_program(candidate["program"].rag, data.test, name=name, progress=False))
    title = f"the personalised step of each candidate program, {len(data.test)} held-out test questions"
    Console().print(results_table(results, title=title))
    example = data.test[0]
    prediction = compiled(input=example.input, profile=example.profile)
    print(f"rating {prediction.output} (gold {example.output}), explanation: {prediction.explanation!r}")
    compiled.save(str(args.out / "inside-program.json"))


if __name__ == "__main__":
    main()
