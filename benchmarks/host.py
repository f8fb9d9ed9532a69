"""The machine a benchmark ran on, for the record beside every figure it prints."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

__all__ = ["cpu_model", "describe"]


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` gives it (the platform's processor string otherwise)."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def describe() -> str:
    """CPU model, whether it has AMX or AVX-512 BF16 (bfloat16 speed depends on it), and threads."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        flags = ""
    bf16 = "AMX" if "amx_bf16" in flags else "AVX-512 BF16" if "avx512_bf16" in flags else "no bf16 units"
    return f"{cpu_model()} ({bf16}), {torch.get_num_threads()} threads"
