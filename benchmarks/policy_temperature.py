"""Which policy temperature τ_π lets ROPG-KD express the LLM's preference (the measured default).

ROPG's policy is softmax(q·d / τ_π) over the candidates. With the default, L2-normalised MiniLM
encoder q·d is a cosine in [-1, 1]. This runs ROPG-KD with the default target (τ = 0.1) at several
τ_π on the key-item task (one profile item in 8 holds the answer; a scripted LLM answers right only
when it reads that item; tests/optimizers/key_item_task.py) and reports, on held-out questions, the
policy's KL to the teacher, how often its top-1 is the teacher's choice (= recall@1 of the key
item), and its entropy, before and after training, all in one run.

    python benchmarks/policy_temperature.py --temperatures 1,0.2,0.05,0.02 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dspy
import torch
from rich.console import Console
from rich.table import Table

from optimizers import ROPG_KD, ROPGKDConfig
from optimizers.ropg import policy_diagnostics
from persona_rag import DenseRetriever, Generator, PersonalizedRAG
from persona_rag.encoders import TextEncoder
from tests.conftest import ScriptedEngine
from tests.optimizers.key_item_task import TASK, make_examples, reply


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--temperatures", default="1,0.2,0.05,0.02")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--train", type=int, default=48)
    parser.add_argument("--held-out", type=int, default=40)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    lm = dspy.LM("scripted/key-item", engine=ScriptedEngine(reply), cache=False, num_retries=0)
    train, val, test = (
        make_examples(args.train, seed=1),
        make_examples(8, seed=2),
        make_examples(args.held_out, seed=3),
    )
    table = Table(title=f"ROPG-KD on the key-item task: held-out ({args.held_out} questions), l = 8")
    for column in (
        "τ_π",
        "KL before",
        "KL after",
        "top-1 = teacher before",
        "after",
        "entropy before",
        "after",
    ):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for tau in (float(t) for t in args.temperatures.split(",")):
            program = PersonalizedRAG(
                task=TASK, retriever=DenseRetriever(encoder=TextEncoder()), generator=Generator(lm=lm), k=1
            )
            config = ROPGKDConfig(
                output_dir=Path(tmp) / f"kd-{tau}",
                feedback_cache=Path(tmp) / "feedback.sqlite",
                candidates=8,
                epochs=args.epochs,
                learning_rate=args.learning_rate,
                batch_size=8,
                gradient_accumulation_steps=1,
                policy_temperature=tau,
                patience=None,
                validation_feedback=False,
                progress=False,
            )
            optimizer = ROPG_KD(config=config)
            held_out = teacher_rows(program, test, Path(tmp) / "feedback.sqlite")
            before = policy_diagnostics(
                TextEncoder(temperature=tau), held_out, temperature=config.temperature
            )
            tuned = optimizer.compile(program, trainset=train, valset=val)
            after = policy_diagnostics(tuned.retriever.encoder, held_out, temperature=config.temperature)
            table.add_row(
                f"{tau:g}",
                f"{before['teacher_kl']:.3f}",
                f"{after['teacher_kl']:.3f}",
                f"{before['teacher_top1']:.3f}",
                f"{after['teacher_top1']:.3f}",
                f"{before['policy_entropy']:.3f}",
                f"{after['policy_entropy']:.3f}",
            )
    Console().print(table)
    return 0


def teacher_rows(program: PersonalizedRAG, examples: list[dspy.Example], cache: Path) -> list:
    """The held-out questions' candidates and the scripted LLM's Eval of each (the teacher)."""
    from optimizers.feedback import Feedback

    return Feedback(program=program, candidates=8, cache=cache, signal="metric", progress=False).compute(
        examples
    )


if __name__ == "__main__":
    raise SystemExit(main())
