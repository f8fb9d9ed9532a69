"""Peak memory and time of one RSPG training step: every weight trained with and without
activation checkpointing, and only the encoder's last layers trained (``trainable_layers``).

An RSPG-Post step scores every pool member's prompt and answer with the selector's encoder
(8 questions x 6 members = 48 sequences of up to 256 tokens) and keeps their activations for the
backward pass. This runs that forward and backward pass in a fresh process per setting (peak RSS
is per process) and prints each, so the memory saved and the time paid are one run's ratios.

    python benchmarks/selector_memory.py --sequences 48 --steps 2 --trainable-layers 2
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


SETTINGS = ("plain", "checkpointing", "last-layers")


def one_setting(checkpointing: bool, sequences: int, steps: int, trainable: int | None) -> dict[str, float]:
    """Run ``steps`` forward and backward passes in this process; its peak RSS and seconds."""
    from persona_rag.selector import SelectorNet

    net = SelectorNet()  # max_length 256, as RSPG trains it
    if trainable:
        net.freeze_below(trainable)
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
    parser.add_argument(
        "--trainable-layers", type=int, default=2, help="the last-layers setting (MiniLM has 6)"
    )
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        checkpointing = args.child == "checkpointing"
        trainable = args.trainable_layers if args.child == "last-layers" else None
        print(json.dumps(one_setting(checkpointing, args.sequences, args.steps, trainable)))
        return 0
    rows = {}
    for setting in SETTINGS:
        done = subprocess.run(
            [sys.executable, __file__, "--child", setting, "--sequences", str(args.sequences),
             "--steps", str(args.steps), "--trainable-layers", str(args.trainable_layers)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows[setting] = json.loads(done.stdout.strip().splitlines()[-1])
    plain, saved, last = rows["plain"], rows["checkpointing"], rows["last-layers"]
    print(f"{args.sequences} sequences x 256 tokens, MiniLM selector, forward + backward:")
    for setting, row in rows.items():
        seconds, peak = row["seconds_per_step"], row["peak_rss_gib"]
        print(f"  {setting:14s} {seconds:6.1f} s/step  peak RSS {peak:.2f} GiB")
    print(
        f"  checkpointing: {saved['peak_rss_gib'] / plain['peak_rss_gib']:.2f}x the peak memory, "
        f"{saved['seconds_per_step'] / plain['seconds_per_step']:.2f}x the step time"
    )
    print(
        f"  last {args.trainable_layers} layers: {last['peak_rss_gib'] / plain['peak_rss_gib']:.2f}x "
        f"the peak memory, {last['seconds_per_step'] / plain['seconds_per_step']:.2f}x the step time"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
