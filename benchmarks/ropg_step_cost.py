"""Cost of one ROPG training step on short (MovieLens) and long (NumPy commit) documents.

ROPG's loss encodes each row's query and its ``l`` candidate documents with gradients
(``optimizers.ropg.policy_batch``). This times that forward and backward pass and reads the peak
RSS for one optimizer step of each task (16 training questions x 8 candidates, two micro-batches
of 8, as ``persona-rag report`` trains), in one process, so the figures compare under the same
load, two ways: the texts in one pass padded to the longest (the baseline, how
``TextEncoder.embed`` worked before) and grouped by token length (how it works now,
``persona_rag.encoders.EMBED_GROUP`` texts a pass):

    python benchmarks/ropg_step_cost.py --data ../shared/lamp-real
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


from optimizers.feedback import CandidateFeedback
from optimizers.losses import distillation_kl
from optimizers.ropg import policy_batch
from persona_rag import encoders
from persona_rag.data import load_lamp
from persona_rag.encoders import TextEncoder
from persona_rag.retrievers import RetrievalResult
from persona_rag.retrievers.base import Hit

TASKS = (("movielens_rating", "short documents"), ("numpy_commit_subjects", "long documents"))


def rows_of(data: Path, name: str, rows: int, candidates: int) -> list[CandidateFeedback]:
    split = load_lamp(data / name, "train", limit=rows)
    out = []
    for example in split.examples():
        documents = split.task.documents(example.profile)[:candidates]
        hits = tuple(Hit(d.index, d.id, 0.0, d) for d in documents)
        scores = tuple(float(i == 0) for i in range(len(hits)))
        out.append(
            CandidateFeedback(example.id, split.task.query(example.input), RetrievalResult(hits), (), scores)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "lamp-real"
    )
    parser.add_argument("--rows", type=int, default=16, help="training questions (one optimizer step)")
    parser.add_argument("--micro-batch", type=int, default=8, help="questions per forward+backward pass")
    parser.add_argument("--candidates", type=int, default=8)
    args = parser.parse_args(argv)
    encoder = TextEncoder(temperature=0.05, cache_size=0)
    encoder.model.train()
    grouped = encoders.EMBED_GROUP
    seconds: dict[tuple[str, str], float] = {}
    for name, label in TASKS:
        batch = rows_of(args.data, name, args.rows, args.candidates)
        texts = [hit.document.text for row in batch for hit in row.candidates.hits]
        lengths = [
            len(ids)
            for ids in encoder.tokenizer(texts, truncation=True, max_length=encoder.max_length)["input_ids"]
        ]
        # Grouped first: the peak RSS read after it is its own (the padded pass's comes on top).
        for mode, group in (("grouped by length", grouped), ("one padded pass", 10**9)):
            encoders.EMBED_GROUP = group
            for _ in range(2):  # the second pass is the one reported (the first warms up)
                encoder.model.zero_grad()
                started = time.perf_counter()
                for start in range(0, len(batch), args.micro_batch):  # as the Trainer accumulates
                    logits, mask, scores = policy_batch(encoder, batch[start : start + args.micro_batch])
                    distillation_kl(scores, logits, mask, temperature=0.1).backward()  # ROPG-KD's loss
                seconds[name, mode] = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(
                f"{name} ({label}): document tokens mean {sum(lengths) / len(lengths):.0f}, "
                f"max {max(lengths)}; "
                f"{args.rows} x {args.candidates} forward+backward, {mode}: {seconds[name, mode]:.2f} s; "
                f"peak RSS so far {peak:.2f} GiB"
            )
    encoders.EMBED_GROUP = grouped
    for mode in ("one padded pass", "grouped by length"):
        ratio = seconds["numpy_commit_subjects", mode] / seconds["movielens_rating", mode]
        print(f"{mode}: long / short {ratio:.2f}x")
    for name, _ in TASKS:
        speedup = seconds[name, "one padded pass"] / seconds[name, "grouped by length"]
        print(f"{name}: grouped is {speedup:.2f}x faster than one padded pass")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
