"""A roofline for every stage of the demo and of ``persona-rag report``, on the machine it runs on.

A stage that takes minutes is only slow if it is far from what the CPU can do. This measures the
CPU's matrix-multiply peak (float32 and bfloat16 GEMM at the shapes the two models use, on one
thread and on all of them), then times each stage on the demo's own sample task and prints the
FLOPs the stage needs (counted from the model's shapes and the tokens it processes), its seconds,
the GFLOP/s it achieved and the ratio to the peak at its precision:

* encoder indexing: MiniLM embeds profile items (inference, float32);
* reader label scoring: one forward pass per prompt scores the five ratings;
* free generation: the batched Generator answers the same prompts (prefill + decoding);
* reader fine-tune step: answer loss, forward and backward through every weight;
* ROPG-KD step: the encoder embeds a question and its ``l`` candidates, forward and backward;
* RSPG step: the selector encoder reads (answer, prompt) pairs of the pool, forward and backward.

FLOPs count what the result needs: 2 x (parameters a token multiplies) per token forward, three
times that with the backward pass; padding, attention's quadratic term and the LM head of positions
whose logits are dropped are not counted, so they show up as lost efficiency. Only the non-padded
tokens are counted.

    python benchmarks/stages.py --prompts 32 --out benchmarks/results/stages.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.host import describe
from benchmarks.roofline import gemm_rate, matmul_parameters
from optimizers.distributed import autocast
from optimizers.reader import answer_loss
from persona_rag import BM25Retriever, Generator, PersonalizedRAG, load_lamp, local_lm
from persona_rag.data import make_sample_task
from persona_rag.encoders import TextEncoder
from persona_rag.selector import SelectorNet


def timed(run: Callable[[], object], repeats: int = 1) -> float:
    """Seconds of ``run`` (after one untimed warm-up call), mean over ``repeats``."""
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


TRAINING_PRECISIONS = ("float32", "bfloat16")
"""The encoder steps run both ways: float32, and the bf16 autocast trainers use where the CPU
computes bfloat16 natively (``optimizers.distributed.mixed_precision``)."""


def autocast_step(step: Callable[[], None], precision: str) -> None:
    """One training step, its forward pass in bf16 autocast when ``precision`` is bfloat16 (weights
    and gradients stay float32, as in the trainers)."""
    with autocast("cpu", "bf16" if precision == "bfloat16" else "no"):
        step()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, help="a LaMP-format rating task (default: the demo's sample task)"
    )
    parser.add_argument("--prompts", type=int, default=32, help="questions per stage")
    parser.add_argument("--k", type=int, default=4, help="profile items per prompt")
    parser.add_argument("--candidates", type=int, default=8, help="ROPG's l")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"), help="the reader's")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()

    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data or make_sample_task(
            Path(scratch) / "sample", n_users=32, questions_per_user=(6, 1, 2)
        )
        data = load_lamp(data_dir, "train", limit=args.prompts)
        examples = data.examples()
    lm = local_lm(max_tokens=8, dtype=args.dtype)
    generator = Generator(lm=lm, max_new_tokens=8)
    program = PersonalizedRAG(task=data.task, retriever=BM25Retriever(), k=args.k, generator=generator)
    results = program.batch_retrieve([e.input for e in examples], [e.profile for e in examples])
    prompts = [program.build_prompt(e.input, r) for e, r in zip(examples, results)]
    reader = generator.local_model
    conversations = [generator.messages(p) for p in prompts]
    prompt_ids = [reader._encode_prompt(c) for c in conversations]
    prompt_tokens = sum(map(len, prompt_ids))
    reader_params = matmul_parameters(reader.model)
    encoder = TextEncoder()
    encoder_params = matmul_parameters(encoder.model)
    item_texts = [d.text for e in examples for d in program.task.documents(e.profile)]
    item_tokens = sum(len(i) for i in encoder.tokenizer(item_texts, truncation=True)["input_ids"])
    hidden, encoder_hidden = reader.model.config.hidden_size, encoder.model.config.hidden_size

    peaks = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        for count in sorted({1, threads}):
            peaks[(name, count)] = max(
                gemm_rate(dtype, 512, hidden, 4 * hidden, threads=count),
                gemm_rate(dtype, 512, encoder_hidden, 4 * encoder_hidden, threads=count),
            )
    torch.set_num_threads(threads)

    stages: list[tuple[str, str, float, float]] = []  # name, precision, FLOPs, seconds

    with torch.inference_mode():
        seconds = timed(lambda: encoder.embed(item_texts))
    stages.append(("encoder indexing", "float32", 2 * encoder_params * item_tokens, seconds))

    labels = [list(data.task.labels_for(e.input)) for e in examples]
    seconds = timed(lambda: reader.score(conversations, labels))
    stages.append(("reader label scoring", args.dtype, 2 * reader_params * prompt_tokens, seconds))

    outputs: list[str] = []

    def generate() -> None:
        outputs[:] = [p.output for p in generator.generate_batch(prompts)]

    seconds = timed(generate)
    new_tokens = sum(len(reader.tokenizer.encode(o, add_special_tokens=False)) + 1 for o in outputs)
    stages.append(("free generation", args.dtype, 2 * reader_params * (prompt_tokens + new_tokens), seconds))

    golds = [reader.tokenizer.encode(str(e.output), add_special_tokens=False) for e in examples]
    batch = list(zip(prompt_ids, golds))[:8]
    pad = reader.tokenizer.pad_token_id or 0
    train_tokens = sum(len(p) + len(a) for p, a in batch)

    def reader_step() -> None:
        reader.model.zero_grad(set_to_none=True)
        answer_loss(reader.model, batch, pad).backward()

    reader.model.requires_grad_(True)
    seconds = timed(lambda: autocast_step(reader_step, args.dtype))
    reader.model.zero_grad(set_to_none=True)
    stages.append(("reader fine-tune step (batch 8)", args.dtype, 6 * reader_params * train_tokens, seconds))

    rows = [(program.task.query(e.input), item_texts[: args.candidates]) for e in examples[:8]]
    kd_texts = [text for query, items in rows for text in (query, *items)]
    kd_tokens = sum(len(i) for i in encoder.tokenizer(kd_texts, truncation=True)["input_ids"])
    encoder.model.train()

    def kd_step() -> None:
        encoder.model.zero_grad(set_to_none=True)
        encoder.embed(kd_texts).sum().backward()

    for precision in TRAINING_PRECISIONS:
        seconds = timed(lambda p=precision: autocast_step(kd_step, p))
        stages.append(
            (
                f"ROPG-KD step (8 x {args.candidates} candidates)",
                precision,
                6 * encoder_params * kd_tokens,
                seconds,
            )
        )
    encoder.model.eval()

    selector = SelectorNet()
    selector.train()
    pairs = list(zip(prompts, outputs))[:16]
    pair_tokens = sum(
        len(i)
        for i in selector.tokenizer(
            [o or "(empty answer)" for _, o in pairs], [p for p, _ in pairs], truncation="only_second",
            max_length=selector.max_length,
        )["input_ids"]
    )  # fmt: skip

    def rspg_step() -> None:
        selector.zero_grad(set_to_none=True)
        selector([p for p, _ in pairs], [o for _, o in pairs]).sum().backward()

    for precision in TRAINING_PRECISIONS:
        seconds = timed(lambda p=precision: autocast_step(rspg_step, p))
        stages.append(
            (
                "RSPG-Post step (16 pairs)",
                precision,
                6 * matmul_parameters(selector.encoder) * pair_tokens,
                seconds,
            )
        )

    print(f"{describe()}; {len(prompts)} prompts, {prompt_tokens / len(prompts):.0f} tokens on average")
    print(
        "GEMM peak (GFLOP/s): " + ", ".join(f"{n} {c} thread(s) {r / 1e9:.0f}" for (n, c), r in peaks.items())
    )
    print(f"| stage | precision | GFLOP | seconds | GFLOP/s | of the {threads}-thread peak |")
    print("|---|---|---|---|---|---|")
    table = []
    for name, precision, flops, seconds in stages:
        rate = flops / seconds
        share = rate / peaks[(precision, threads)]
        table.append({"stage": name, "precision": precision, "gflop": flops / 1e9, "seconds": seconds,
                      "gflops": rate / 1e9, "of_peak": share})  # fmt: skip
        print(
            f"| {name} | {precision} | {flops / 1e9:.1f} | {seconds:.2f} | {rate / 1e9:.0f} | {share:.0%} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        peak_rows = [{"precision": n, "threads": c, "gflops": r / 1e9} for (n, c), r in peaks.items()]
        args.out.write_text(json.dumps({"host": describe(), "peaks": peak_rows, "stages": table}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
