"""persona_rag.lm.loading: the precisions an in-process model runs at."""

import pytest

from persona_rag.lm import LocalLM


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16"):
        LocalLM(dtype="float16")


def test_auto_precision_follows_the_hardware(monkeypatch):
    from persona_rag.lm import loading

    assert loading.resolve_dtype("float32") == "float32"
    monkeypatch.setattr(loading, "native_bfloat16", lambda device=None: True)
    assert loading.resolve_dtype("auto") == "bfloat16"
    monkeypatch.setattr(loading, "native_bfloat16", lambda device=None: False)
    assert loading.resolve_dtype("auto") == "float32"
