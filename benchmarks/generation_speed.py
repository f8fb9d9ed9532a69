"""Free-generation speed on long personalised prompts: the batched reader against unbatched ``generate``.

Generation tasks (LaMP-4..7) make the reader write the answer, and a full-size run asks for many
thousands of answers (RSPG's pool feedback, every reported row). This answers the same prompts
(a task's real prompts: each question with its top-``k`` BM25 items within ``--max-input-tokens``)
two ways in one run, with the same weights at the same precision:

* persona-rag's :class:`~persona_rag.generator.Generator` (length-sorted batches, the shared
  chat-template prefix computed once, each row stopped at the end of its answer line or its end
  token, rows leaving the batch as they finish);
* one unbatched Hugging Face ``model.generate`` call per prompt, greedy, ``--max-new-tokens``
  (what a plain loop does), its reply cut to its first line as the generator's answer is.

It prints answers per second for each, the ratio, and how many greedy answers are identical; how
the Generator's seconds split between prefill (forward passes over many tokens per row) and
decoding (one token per row); and the prefill bound: the FLOPs of the prompts' tokens (2 x the
parameters a token multiplies, i.e. all but the embedding table, whose output projection runs on
one position per row) at the bfloat16/float32 GEMM rate measured here at the model's MLP shape.

    python benchmarks/generation_speed.py --data ../shared/lamp-real/numpy_commit_subjects \\
        --prompts 96 --max-new-tokens 16 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.host import describe
from benchmarks.roofline import gemm_rate, matmul_parameters
from persona_rag import BM25Retriever, Generator, PersonalizedRAG, load_lamp, local_lm
from persona_rag.generator import extract_answer


class _Phases:
    """Seconds and calls of a model's forward passes, split into prefill (more than one new token
    per row) and decoding (one), by wrapping ``model.forward``; ``forward`` is the original."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.forward = model.forward
        self.seconds = {"prefill": 0.0, "decode": 0.0}
        self.calls = {"prefill": 0, "decode": 0}

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.forward(*args, **kwargs)
        phase = "prefill" if kwargs["input_ids"].shape[1] > 1 else "decode"
        self.seconds[phase] += time.perf_counter() - start
        self.calls[phase] += 1
        return out


def _time_phases(model: torch.nn.Module) -> _Phases:
    phases = _Phases(model)
    model.forward = phases
    return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a LaMP-format generation task folder")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-input-tokens", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    args = parser.parse_args(argv)

    data = load_lamp(args.data, args.split, limit=args.prompts)
    examples = data.examples()
    lm = local_lm(args.model, max_tokens=args.max_new_tokens, dtype=args.dtype)
    generator = Generator(lm=lm, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    program = PersonalizedRAG(
        task=data.task, retriever=BM25Retriever(), k=args.k, generator=generator,
        max_input_tokens=args.max_input_tokens,
    )  # fmt: skip
    results = program.batch_retrieve([e.input for e in examples], [e.profile for e in examples])
    prompts = [program.build_prompt(e.input, r) for e, r in zip(examples, results)]
    model = generator.local_model
    tokenizer = model.tokenizer
    encoded = [model._encode_prompt(generator.messages(p)) for p in prompts]
    tokens = sum(map(len, encoded))

    phases = _time_phases(model.model)
    start = time.perf_counter()
    ours = [p.output for p in generator.generate_batch(prompts)]
    ours_seconds = time.perf_counter() - start
    model.model.forward = phases.forward  # unwrapped: the unbatched loop runs untimed by phase

    start = time.perf_counter()
    plain = []
    for ids in encoded:
        with torch.inference_mode():
            out = model.model.generate(
                torch.tensor([ids]), max_new_tokens=args.max_new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
        plain.append(extract_answer(tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip()))
    plain_seconds = time.perf_counter() - start

    parameters = matmul_parameters(model.model)
    hidden = model.model.config.hidden_size
    rate = gemm_rate(getattr(torch, args.dtype), 512, hidden, 4 * hidden, rounds=1)  # the MLP's shape
    prefill_bound = 2 * parameters * tokens / rate
    same = sum(a == b for a, b in zip(ours, plain))
    n = len(prompts)
    print(
        f"{describe()}; {args.data.name}/{args.split}, {n} prompts, "
        f"{tokens / n:.0f} prompt tokens on average, {args.max_new_tokens} new tokens, {args.dtype}"
    )
    print(f"persona-rag Generator:    {ours_seconds:7.1f} s  {n / ours_seconds:5.2f} answers/s")
    print(f"unbatched model.generate: {plain_seconds:7.1f} s  {n / plain_seconds:5.2f} answers/s")
    print(f"speed-up: {plain_seconds / ours_seconds:.2f}x; identical greedy answers: {same}/{n}")
    print(
        f"Generator phases: prefill {phases.seconds['prefill']:.1f} s in {phases.calls['prefill']} passes, "
        f"decoding {phases.seconds['decode']:.1f} s in {phases.calls['decode']} steps"
    )
    print(
        f"{args.dtype} GEMM {rate / 1e9:.0f} GFLOP/s at the MLP's shape; prefill bound "
        f"{prefill_bound:.1f} s = {n / prefill_bound:.2f} answers/s "
        f"({parameters / 1e6:.0f}M parameters besides the embeddings)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
