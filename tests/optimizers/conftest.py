"""Fixtures of the optimizer tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory):
    """A random one-layer BERT encoder (:func:`tests.optimizers.pair_task.tiny_encoder`), written once."""
    from tests.optimizers.pair_task import tiny_encoder

    return tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))
