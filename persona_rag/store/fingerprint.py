"""Which encoder made a stored vector: a content hash of its weights, tokenizer and pooling.

The store records it with every vector, so a user's items are never searched with a query from
another encoder, even one in a folder of the same name.
"""

from __future__ import annotations

import hashlib
import json
import weakref

import torch

from persona_rag.encoders import TextEncoder

__all__ = ["encoder_fingerprint"]

_FINGERPRINTS: weakref.WeakKeyDictionary[TextEncoder, tuple[tuple[int, ...], str]] = (
    weakref.WeakKeyDictionary()
)


def encoder_fingerprint(encoder: TextEncoder) -> str:
    """A content hash of what an embedding depends on: weights, tokenizer and pooling settings.

    Two checkpoints in folders of the same name, or a checkpoint retrained in place, get different
    fingerprints, so the store re-embeds (or refuses to search) instead of comparing vectors of two
    encoders. Hashing MiniLM's weights takes about 0.25 s, so the result is cached per encoder
    object and recomputed only when a weight was changed in place since (torch counts in-place
    changes in ``Tensor._version``).
    """
    state = encoder.model.state_dict()
    versions = tuple(tensor._version for tensor in state.values())
    cached = _FINGERPRINTS.get(encoder)
    if cached is not None and cached[0] == versions:
        return cached[1]
    digest = hashlib.sha256()
    settings = {
        "model": type(encoder.model).__name__,
        "pooling": "mean",
        "normalize": encoder.normalize,
        "max_length": encoder.max_length,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    backend = getattr(encoder.tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast tokenizer: vocabulary, normaliser, pre-tokeniser, post-processor
        spec = json.loads(backend.to_str())
        for key in ("truncation", "padding"):  # set by each call, not part of the tokenizer
            spec.pop(key, None)
    else:
        spec = encoder.tokenizer.get_vocab()
    digest.update(json.dumps(spec, sort_keys=True).encode())
    for name, tensor in sorted(state.items()):
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{data.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    fingerprint = digest.hexdigest()[:32]
    _FINGERPRINTS[encoder] = (versions, fingerprint)
    return fingerprint
