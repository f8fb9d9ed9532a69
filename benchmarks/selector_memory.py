"""Peak memory and time of one RSPG training step: every weight trained with and without
activation checkpointing, and only the encoder's last layers trained (``trainable_layers``),
their frozen lower layers run every step or once per candidate and cached
(``cache_frozen_layers``).

An RSPG-Post step scores every pool member's prompt and answer with the selector's encoder
(8 questions x 6 members = 48 sequences of up to 256 tokens) and keeps their activations for the
backward pass. This runs that forward and backward pass in a fresh process per setting (peak RSS
is per process) and prints each, so the memory saved and the time paid are one run's ratios. Each
setting first runs one untimed step: for the cached setting that step fills the cache, as a
training run's first epoch does, and the timed steps are those of the later epochs.

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


SETTINGS = ("plain", "checkpointing", "last-layers", "last-layers-cached")


def one_setting(setting: str, sequences: int, steps: int, trainable: int) -> dict[str, float]:
    """Run ``steps`` forward and backward passes in this process; its peak RSS and seconds."""
    from persona_rag.selector import SelectorNet

    net = SelectorNet()  # max_length 256, as RSPG trains it
    if setting.startswith("last-layers"):
        net.freeze_below(trainable, cache=setting == "last-layers-cached")
    if setting == "checkpointing":
        net.encoder.activation_checkpointing_enable({"use_reentrant": False})
    net.train()
    # Distinct candidates, as a step's are (truncation keeps a prompt's end), of 256 tokens each.
    prompts = ["a profile item of the user, " * 60 + f"question {i}" for i in range(sequences)]
    answers = ["4"] * sequences
    net(prompts, answers).sum().backward()
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
        print(json.dumps(one_setting(args.child, args.sequences, args.steps, args.trainable_layers)))
        return 0
    rows = {}
    for setting in SETTINGS:
        done = subprocess.run(
            [sys.executable, __file__, "--child", setting, "--sequences", str(args.sequences),
             "--steps", str(args.steps), "--trainable-layers", str(args.trainable_layers)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows[setting] = json.loads(done.stdout.strip().splitlines()[-1])
    plain = rows["plain"]
    print(f"{args.sequences} sequences x 256 tokens, MiniLM selector, forward + backward:")
    for setting, row in rows.items():
        seconds, peak = row["seconds_per_step"], row["peak_rss_gib"]
        print(
            f"  {setting:18s} {seconds:6.2f} s/step ({seconds / plain['seconds_per_step']:.2f}x)  "
            f"peak RSS {peak:.2f} GiB ({peak / plain['peak_rss_gib']:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
