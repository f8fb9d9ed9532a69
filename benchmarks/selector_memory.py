"""Peak memory and time of one RSPG training step, with and without activation checkpointing.

An RSPG-Post step scores every pool member's prompt and answer with the selector's encoder
(8 questions x 6 members = 48 sequences of up to 256 tokens) and keeps their activations for the
backward pass. This runs that forward and backward pass twice in a fresh process per setting (peak
RSS is per process) and prints both, so the memory saved and the time paid are one run's ratios.

    python benchmarks/selector_memory.py --sequences 48 --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def one_setting(checkpointing: bool, sequences: int, steps: int) -> dict[str, float]:
    """Run ``steps`` forward and backward passes in this process; its peak RSS and seconds."""
    from persona_rag.selector import SelectorNet

    net = SelectorNet()  # max_length 256, as RSPG trains it
    if checkpointing:
        net.encoder.activation_checkpointing_enable({"use_reentrant": False})
    net.train()
    prompts = ["a profile item of the user, " * 60] * sequences  # truncated to 256 tokens
    answers = ["4"] * sequences
    start = time.perf_counter()
    for _ in range(steps):
        net(prompts, answers).sum().backward()
    return {
        "seconds_per_step": (time.perf_counter() - start) / steps,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=48, help="sequences per step (questions x pool)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--child", choices=["plain", "checkpointing"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(one_setting(args.child == "checkpointing", args.sequences, args.steps)))
        return 0
    rows = {}
    for setting in ("plain", "checkpointing"):
        done = subprocess.run(
            [sys.executable, __file__, "--child", setting, "--sequences", str(args.sequences),
             "--steps", str(args.steps)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows[setting] = json.loads(done.stdout.strip().splitlines()[-1])
    plain, saved = rows["plain"], rows["checkpointing"]
    print(f"{args.sequences} sequences x 256 tokens, MiniLM selector, forward + backward:")
    for setting, row in rows.items():
        seconds, peak = row["seconds_per_step"], row["peak_rss_gib"]
        print(f"  {setting:14s} {seconds:6.1f} s/step  peak RSS {peak:.2f} GiB")
    print(
        f"  checkpointing: {saved['peak_rss_gib'] / plain['peak_rss_gib']:.2f}x the peak memory, "
        f"{saved['seconds_per_step'] / plain['seconds_per_step']:.2f}x the step time"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
