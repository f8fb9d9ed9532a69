"""Which process of a launch this is, and the few collectives the trainers and feedback need.

The same command runs as ``python ...``, ``accelerate launch --multi_gpu --num_processes N ...``
or ``torchrun --nproc-per-node N ...``: both launchers set ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``,
and Hugging Face Accelerate's :class:`~accelerate.PartialState` reads them, starts the process
group (NCCL on GPUs, gloo on CPU) and pins each process to its own GPU. A plain ``python`` run is
a launch of one process, and every helper here is then a no-op.

Call :func:`initialize` before building models on a multi-GPU launch: it makes ``"cuda"`` mean
this process's GPU, so a model loaded afterwards lands there (the CLI does it first thing;
:class:`~optimizers.training.Trainer` and :class:`~optimizers.feedback.Feedback` call it too).

Values cross processes as JSON in uint8 tensors, never pickled, so nothing a peer sends runs code.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from datetime import timedelta
from functools import lru_cache
from typing import Any

import torch

__all__ = [
    "all_sum",
    "all_sum_tensors",
    "autocast",
    "barrier",
    "broadcast_json",
    "gather_json",
    "initialize",
    "is_main",
    "mixed_precision",
    "rank",
    "world_size",
]

# Ranks wait for each other at barriers (after feedback shards, around validation). A shard of a
# large model's feedback can finish hours after another, and torch's 30-minute default would kill
# a healthy launch; a dead rank is noticed by the launcher (torchrun stops the others) anyway.
_TIMEOUT = timedelta(hours=float(os.environ.get("PERSONA_RAG_DIST_TIMEOUT_HOURS", "6")))


@lru_cache(maxsize=1)
def initialize() -> Any:
    """Accelerate's process state for this launch, started once (process group, device pinning).

    CPU-only machines get gloo (``PartialState`` needs ``cpu=True`` for that; without it a CPU
    launch would silently run N independent copies), GPU machines NCCL.
    """
    from accelerate import PartialState

    cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return PartialState(cpu=cpu, timeout=_TIMEOUT)
    return PartialState(cpu=cpu)


def _launched() -> bool:
    """Whether this process belongs to a launch of several (without starting anything otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    return initialize().num_processes if _launched() else 1


def rank() -> int:
    return initialize().process_index if _launched() else 0


def is_main() -> bool:
    """Whether this is the process that writes checkpoints, history, plots and merged caches."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        initialize().wait_for_everyone()


def _device() -> torch.device:
    """Where collectives' tensors live: this process's GPU under NCCL, the CPU under gloo."""
    return initialize().device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over all processes (float64, so counts stay exact)."""
    if world_size() == 1:
        return [float(v) for v in values]
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def all_sum_tensors(tensors: Sequence[torch.Tensor], *, bucket: int = 1 << 24) -> None:
    """Sum ``tensors`` in place over all processes, a bucket of about ``bucket`` elements per
    call: what DDP does to gradients, without a flat copy of a large model's gradients at once."""
    if world_size() == 1:
        return
    start = 0
    while start < len(tensors):
        end, size = start, 0
        while end < len(tensors) and (end == start or size + tensors[end].numel() <= bucket):
            size += tensors[end].numel()
            end += 1
        group = tensors[start:end]
        flat = torch.cat([t.reshape(-1) for t in group])
        torch.distributed.all_reduce(flat)
        offset = 0
        for t in group:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()
        start = end


def gather_json(value: Any) -> list[Any]:
    """Every process's ``value`` (anything JSON can hold), in rank order, on every process."""
    if world_size() == 1:
        return [value]
    data = json.dumps(value).encode("utf-8")
    length = torch.tensor([len(data)], dtype=torch.int64, device=_device())
    lengths = [torch.zeros_like(length) for _ in range(world_size())]
    torch.distributed.all_gather(lengths, length)
    width = int(max(int(n) for n in lengths))
    buffer = torch.zeros(width, dtype=torch.uint8, device=_device())
    buffer[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    buffers = [torch.zeros_like(buffer) for _ in range(world_size())]
    torch.distributed.all_gather(buffers, buffer)
    return [json.loads(bytes(b[: int(n)].cpu().tolist())) for b, n in zip(buffers, lengths)]


def broadcast_json(value: Any) -> Any:
    """The main process's ``value`` on every process (the others pass anything, e.g. ``None``)."""
    return gather_json(value if is_main() else None)[0]


def mixed_precision(device: torch.device | str, choice: str = "auto") -> str:
    """The forward passes' precision: ``choice`` when it is ``no`` or ``bf16``; for ``auto``,
    ``PERSONA_RAG_MIXED_PRECISION=no|bf16`` or ``accelerate launch --mixed_precision bf16`` when
    set, else ``bf16`` where the device computes it natively (a GPU that supports it, a CPU with
    AVX-512 BF16 or AMX: 1.7-1.8x faster encoder steps than float32 on an AVX-512 BF16 CPU,
    ``benchmarks/README.md``) and ``no`` elsewhere (emulated bfloat16 is slower than float32, and
    fp16 would need loss scaling)."""
    if choice != "auto":
        return choice
    chosen = os.environ.get("PERSONA_RAG_MIXED_PRECISION")
    if chosen in ("no", "bf16"):
        return chosen
    if os.environ.get("ACCELERATE_MIXED_PRECISION") == "bf16":  # launch sets "no" unless asked
        return "bf16"
    from persona_rag.lm.loading import native_bfloat16

    return "bf16" if native_bfloat16(torch.device(device).type) else "no"


@contextlib.contextmanager
def autocast(device: torch.device | str, choice: str = "auto") -> Iterator[str]:
    """Run the forward pass in :func:`mixed_precision` (weights and optimizer stay float32)."""
    device = torch.device(device)
    precision = mixed_precision(device, choice)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield precision
