"""The encoder fingerprint a stored vector records: it follows the weights, not the folder name."""

from __future__ import annotations

from persona_rag.encoders import TextEncoder
from persona_rag.store import encoder_fingerprint


def test_the_fingerprint_follows_the_weights_not_the_name(encoder: TextEncoder, retrained: dict) -> None:
    assert retrained["before"] == encoder_fingerprint(encoder)  # a copy of the same weights: same
    assert retrained["after"] != retrained["before"]  # changed in place: recomputed
    second = retrained["second"]
    assert second.name == str(retrained["path"]) and encoder_fingerprint(second) == retrained["after"]
