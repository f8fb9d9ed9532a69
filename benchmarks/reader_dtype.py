"""What bfloat16 would buy the in-process reader on this CPU: label-scoring speed and agreement.

Label scoring (one forward pass per prompt, the label tokens read off the last position) is most
of the LLM time of ``make demo``, ROPG feedback and the report's evaluation, and the 135M reader runs
in float32. This scores the same sample-task prompts (each question with its 4 latest profile items,
LaMP-3's prompt) with the model in float32 (as persona-rag runs it) and a bfloat16 copy, in one
process, and prints prompts/s of each, the speed ratio, how often the best rating agrees and the
largest difference of a label's log-probability. persona-rag has no bfloat16 option yet; this
measures whether one is worth adding.

    python benchmarks/reader_dtype.py --questions 64
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from persona_rag.data import load_lamp, make_sample_task
from persona_rag.lm import LocalLM

LABELS = ["1", "2", "3", "4", "5"]


def _timed_scores(lm: LocalLM, conversations: list, batch_size: int) -> tuple[float, np.ndarray]:
    lm.score(conversations[:batch_size], [LABELS] * batch_size, batch_size=batch_size)  # warm-up
    started = time.perf_counter()
    scores = lm.score(conversations, [LABELS] * len(conversations), batch_size=batch_size)
    return len(conversations) / (time.perf_counter() - started), np.stack(scores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        data = make_sample_task(folder, n_users=32, profile_size=24, questions_per_user=(6, 1, 2), seed=0)
        split = load_lamp(data, "train", limit=args.questions)
        conversations = [
            [{"role": "user", "content": split.task.prompt(ex.input, ex.profile[-4:])}]
            for ex in split.examples()
        ]
    lm = LocalLM(batch_size=args.batch_size)
    rate32, scores32 = _timed_scores(lm, conversations, args.batch_size)
    lm.model.to(torch.bfloat16)
    rate16, scores16 = _timed_scores(lm, conversations, args.batch_size)
    agree = float(np.mean(scores32.argmax(axis=1) == scores16.argmax(axis=1)))
    print(f"{len(conversations)} prompts, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    print(f"float32:  {rate32:.2f} prompts/s")
    print(f"bfloat16: {rate16:.2f} prompts/s ({rate16 / rate32:.2f}x)")
    print(
        f"best rating agrees on {agree:.3f} of prompts; largest label log-prob difference "
        f"{np.abs(scores32 - scores16).max():.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
