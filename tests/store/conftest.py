"""Fixtures of the store tests: embedded (PersistentClient) and a real ``chroma run`` server.

Every behaviour test runs against both backends; the server ones are marked ``server`` and start
one Chroma server per module on a free loopback port (``pytest -m "not server"`` skips them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from persona_rag.encoders import TextEncoder
from persona_rag.store import ProfileStore, encoder_fingerprint
from tests.store.sample import TASK, StoreFactory, free_port

CHROMA = Path(sys.executable).parent / "chroma"
SERVER_START_TIMEOUT = 60.0


@pytest.fixture(scope="package")
def encoder() -> TextEncoder:
    """One encoder for every store test (loading it takes seconds)."""
    return TextEncoder()  # `embedded_texts` records what the store asks of it, cache or not


def _heartbeat(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(f"{url}/api/v2/heartbeat", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``chroma run`` on a free loopback port; yields its URL and stops it afterwards."""
    if not CHROMA.exists():
        pytest.skip(f"no chroma binary at {CHROMA}")
    root = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(CHROMA), "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _heartbeat(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                state = f"exited with {process.returncode}" if process.poll() is not None else "timed out"
                pytest.fail(f"chroma server on {url} {state}; log:\n{tail}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, encoder: TextEncoder
) -> Iterator[StoreFactory]:
    """``make_store(namespace=...)``: a ProfileStore on this test's backend; the same arguments
    reopen the same data with a new client. Each test gets its own path (embedded) or its own
    namespace (server), so tests never see each other's users."""
    if request.param == "server":
        location: dict[str, Any] = {"url": request.getfixturevalue("chroma_server")}
    else:
        location = {"path": tmp_path / "chroma"}
    prefix = f"t{uuid.uuid4().hex[:12]}"
    stores: list[ProfileStore] = []

    def factory(namespace: str = "main", encoder: TextEncoder = encoder) -> ProfileStore:
        store = ProfileStore(**location, task=TASK, encoder=encoder, namespace=f"{prefix}-{namespace}")
        stores.append(store)
        return store

    yield factory
    for store in stores:
        store.client.close()  # idempotent; a test may have closed it already
    if request.param == "server":  # the server outlives the test: drop what it wrote
        import chromadb

        client = chromadb.HttpClient(host="127.0.0.1", port=int(location["url"].rsplit(":", 1)[1]))
        for collection in client.list_collections():
            if collection.name.startswith(prefix):
                client.delete_collection(collection.name)
        client.close()


@pytest.fixture
def store(make_store: StoreFactory) -> ProfileStore:
    return make_store()


@pytest.fixture
def embedded_texts(monkeypatch: pytest.MonkeyPatch, encoder: TextEncoder) -> list[str]:
    """Every text the store asks the encoder to embed, in order."""
    texts: list[str] = []
    original = encoder.encode

    def recording(batch: Sequence[str], **kwargs: Any) -> np.ndarray:
        texts.extend(batch)
        return original(batch, **kwargs)

    monkeypatch.setattr(encoder, "encode", recording)
    return texts


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory, encoder: TextEncoder) -> dict[str, Any]:
    """The default encoder saved as a checkpoint, then retrained in place: the same folder name
    (the encoder's ``name``) holds other weights."""
    path = tmp_path_factory.mktemp("checkpoint") / "best"
    encoder.save(path)
    first = TextEncoder(str(path))
    before = encoder_fingerprint(first)
    with torch.no_grad():  # "training": an in-place change of the weights
        weights = first.model.embeddings.word_embeddings.weight
        weights.add_(0.05 * torch.randn(weights.shape, generator=torch.Generator().manual_seed(0)))
    after = encoder_fingerprint(first)
    first.save(path)
    return {"path": path, "before": before, "after": after, "second": TextEncoder(str(path))}
