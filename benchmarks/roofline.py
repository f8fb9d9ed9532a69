"""What the CPU can do and what a model asks of it: the two sides of every ratio to the peak."""

from __future__ import annotations

import time

import torch

__all__ = ["gemm_rate", "matmul_parameters"]


def gemm_rate(
    dtype: torch.dtype, rows: int, inner: int, outer: int, *, threads: int | None = None, rounds: int = 3
) -> float:
    """FLOP/s of a (rows x inner) @ (inner x outer) product: the best of ``rounds`` timings of five
    products each, on ``threads`` threads (``None``: torch's current setting, left as it is)."""
    if threads is not None:
        torch.set_num_threads(threads)
    a, b = torch.randn(rows, inner, dtype=dtype), torch.randn(inner, outer, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        best = min(best, (time.perf_counter() - start) / 5)
    return 2 * rows * inner * outer / best


def matmul_parameters(model: torch.nn.Module) -> int:
    """Parameters a token multiplies: all but the input embedding table (a lookup; tied to the LM
    head, which the generator runs on one position per row)."""
    return sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
