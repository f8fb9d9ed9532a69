"""One process of a small launch, run by tests/optimizers/test_distributed.py (under ``torchrun``,
or in the test's own process as the one-process reference): the production Trainer and Feedback
on a toy problem, with a way to crash or ``kill -9`` one rank part-way.

``python -m tests.optimizers.distributed_worker train OUT [--rank R --after N]`` (rank R raises)
``python -m tests.optimizers.distributed_worker feedback OUT [--rank R --after N]`` (``kill -9``)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import torch

from optimizers import distributed

TRAIN_ITEMS = 64
FEEDBACK_EXAMPLES = 6
FEEDBACK_CANDIDATES = 4


def toy_model() -> torch.nn.Module:
    """A small regression net with dropout, so the test also covers per-micro-batch randomness."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(2, 16), torch.nn.Dropout(0.2), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    )


def train(out: Path, *, crash_rank: int | None = None, crash_after: int = 0) -> list[float]:
    """Train the toy net with the production Trainer; returns (and writes, per rank) its weights."""
    from optimizers.training import Trainer, TrainingConfig

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(TRAIN_ITEMS, 2, generator=generator)
    y = x @ torch.tensor([2.0, -3.0])
    items = [(x[i], float(y[i])) for i in range(TRAIN_ITEMS)]
    model = toy_model()
    calls = {"n": 0}

    def loss_fn(batch):
        if distributed.rank() == crash_rank and calls["n"] == crash_after:
            raise SystemExit(3)  # this rank fails mid-epoch; the launcher stops the others
        calls["n"] += 1
        inputs = torch.stack([item[0] for item in batch])
        targets = torch.tensor([item[1] for item in batch])
        return torch.nn.functional.mse_loss(model(inputs).squeeze(-1), targets)

    def validate():
        with torch.no_grad():
            inputs = torch.stack([item[0] for item in items])
            targets = torch.tensor([item[1] for item in items])
            return {"score": -float(torch.nn.functional.mse_loss(model(inputs).squeeze(-1), targets))}

    def save_best(directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"saved-by-rank-{distributed.rank()}").write_text("")

    config = TrainingConfig(
        output_dir=out, learning_rate=0.05, epochs=3, batch_size=4, gradient_accumulation_steps=4,
        checkpoint_every=1, patience=None, progress=False, seed=7,
    )  # fmt: skip
    Trainer(module=model, config=config, loss_fn=loss_fn, validate=validate, save_best=save_best).fit(items)
    weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).tolist()
    (out / f"final-rank-{distributed.rank()}.json").write_text(json.dumps(weights))
    return weights


def feedback(out: Path, *, kill_rank: int | None = None, kill_after: int = 0) -> list[list]:
    """Key-item feedback with a scripted LLM through the production Feedback; every call a rank
    makes is logged (one line, flushed) in ``out/calls-rank-R.log``."""
    import dspy

    from optimizers.feedback import Feedback
    from persona_rag import BM25Retriever, Generator, PersonalizedRAG
    from tests.conftest import ScriptedEngine
    from tests.optimizers.key_item_task import TASK, make_examples, reply

    me = distributed.rank()
    log = out / f"calls-rank-{me}.log"
    calls = {"n": 0}

    def counted(messages):
        if me == kill_rank and calls["n"] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9: no cleanup, no exception handler
        calls["n"] += 1
        with log.open("a") as handle:
            handle.write("call\n")
        return reply(messages)

    lm = dspy.LM("scripted/test", engine=ScriptedEngine(counted), cache=False, num_retries=0)
    program = PersonalizedRAG(task=TASK, retriever=BM25Retriever(), generator=Generator(lm=lm))
    rows = Feedback(
        program=program, candidates=FEEDBACK_CANDIDATES, cache=out / "feedback.sqlite",
        batch_size=2, num_threads=1, progress=False,
    ).compute(make_examples(FEEDBACK_EXAMPLES, profile_size=6))  # fmt: skip
    table = [[row.example_id, list(row.candidates.ids), list(row.outputs), list(row.scores)] for row in rows]
    (out / f"rows-rank-{me}.json").write_text(json.dumps(table))
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("job", choices=["train", "feedback"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rank", type=int, help="the rank that crashes (train) or is killed (feedback)")
    parser.add_argument("--after", type=int, default=0, help="after this many of its loss or LLM calls")
    args = parser.parse_args()
    distributed.initialize()
    if args.job == "train":
        train(args.out, crash_rank=args.rank, crash_after=args.after)
    else:
        feedback(args.out, kill_rank=args.rank, kill_after=args.after)


if __name__ == "__main__":
    main()
