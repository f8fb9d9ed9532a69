"""Scaling out on one machine: ROPG-KD's feedback and training steps with 1 vs N processes, one run.

Each launch (``torchrun --standalone --nproc-per-node N``, gloo on CPU, NCCL on GPU) runs the
production path end to end: ``ROPG_KD.compile`` with the in-process SmolLM2 reader (label
scoring) and the MiniLM dense retriever on movielens_rating train questions. Feedback is sharded
over the processes and merged by rank 0, then the Trainer splits each step's micro-batches over
them. Every launch starts from an empty output folder and feedback cache. The same total number
of CPU threads is given to every launch (``--threads`` split evenly over its processes), so the
ratio says what more processes buy on the same cores, not on more cores.

    python benchmarks/distributed.py --questions 16 --candidates 4 --epochs 3 --processes 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "lamp-real" / "movielens_rating"


def worker(args: argparse.Namespace) -> None:
    """One process of a launch: ROPG-KD end to end; rank 0 writes the launch's figures."""
    from optimizers import distributed
    from optimizers.ropg import ROPG_KD, ROPGKDConfig
    from persona_rag import DenseRetriever, Generator, PersonalizedRAG, load_lamp, local_lm

    distributed.initialize()  # before the models load: each rank on its own GPU
    examples = load_lamp(args.data, "train", limit=args.questions + args.val).examples()
    program = PersonalizedRAG(
        task="LaMP-3", retriever=DenseRetriever(), generator=Generator(lm=local_lm(), batch_size=16)
    )
    config = ROPGKDConfig(
        output_dir=args.out / "ropg", feedback_cache=args.out / "feedback.sqlite",
        candidates=args.candidates, max_examples=args.questions, max_val_examples=args.val,
        epochs=args.epochs, batch_size=args.batch_size, gradient_accumulation_steps=args.grad_accum,
        patience=None, validation_feedback=False, skip_uniform=False, progress=False,
    )  # fmt: skip
    optimizer = ROPG_KD(config=config)
    optimizer.compile(program, trainset=examples[: args.questions], valset=examples[args.questions :])
    if distributed.is_main():
        prompts, seconds = optimizer.feedback_cost
        result = optimizer.result
        figures = {
            "processes": distributed.world_size(),
            "feedback_prompts": prompts,
            "feedback_seconds": seconds,
            "steps": result.steps,
            "step_seconds": result.step_seconds,
        }
        (args.out / "figures.json").write_text(json.dumps(figures))


def launch(args: argparse.Namespace, processes: int, out: Path) -> dict[str, float]:
    threads = max(1, args.threads // processes)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        __file__, "--worker", "--out", str(out), "--data", str(args.data), "--questions", str(args.questions),
        "--val", str(args.val), "--candidates", str(args.candidates), "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--grad-accum", str(args.grad_accum),
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    return json.loads((out / "figures.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--questions", type=int, default=16, help="training questions")
    parser.add_argument("--val", type=int, default=4, help="validation questions (not timed)")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=2, help="micro-batches per step, over all ranks")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per launch, split over ranks")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    from rich.console import Console
    from rich.table import Table

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for processes in args.processes:
            rows.append(launch(args, processes, Path(scratch) / f"launch-{processes}"))
    base = rows[0]
    size = f"{args.questions} questions x {args.candidates} candidates, {args.epochs} epochs"
    table = Table(title=f"ROPG-KD, {size}")
    for column in ("processes", "feedback prompts/s", "vs first", "training steps/s", "vs first", "steps"):
        table.add_column(column, justify="right")

    def rate(row: dict[str, float], count: str, seconds: str) -> float:
        return row[count] / row[seconds]

    for row in rows:
        feedback = rate(row, "feedback_prompts", "feedback_seconds")
        steps = rate(row, "steps", "step_seconds")
        table.add_row(
            str(row["processes"]),
            f"{feedback:.2f}",
            f"{feedback / rate(base, 'feedback_prompts', 'feedback_seconds'):.2f}x",
            f"{steps:.3f}",
            f"{steps / rate(base, 'steps', 'step_seconds'):.2f}x",
            str(row["steps"]),
        )
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
