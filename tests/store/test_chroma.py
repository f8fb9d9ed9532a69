"""Opening Chroma: an unreachable server, an unusable folder, a server that goes away, the lock
that serialises openers, and the bearer token behind a proxy."""

from __future__ import annotations

import http.client
import logging
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from persona_rag.encoders import TextEncoder
from persona_rag.errors import StoreError
from persona_rag.store import ProfileStore, chroma
from persona_rag.store.chroma import OPEN_LOCK, TOKEN_ENV
from tests.store.sample import ALICE, BOB, SCI_FI_QUERY, TASK, free_port


def test_an_unreachable_server_is_an_error_naming_it(encoder: TextEncoder) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StoreError, match=re.escape(url)) as error:
        ProfileStore(url=url, task=TASK, encoder=encoder)
    assert "chroma run" in str(error.value)


def test_an_unusable_embedded_path_is_an_error_naming_it(tmp_path: Path, encoder: TextEncoder) -> None:
    path = tmp_path / "a-file"
    path.write_text("not a directory")
    with pytest.raises(StoreError, match=re.escape(str(path))):
        ProfileStore(path, task=TASK, encoder=encoder)


@pytest.mark.server
def test_losing_the_server_is_an_error_not_an_empty_profile(chroma_server: str, encoder: TextEncoder) -> None:
    with TokenProxy(chroma_server) as proxy:  # a plain pass-through that can be switched off
        store = ProfileStore(url=proxy.url, task=TASK, encoder=encoder, namespace=f"t{uuid.uuid4().hex[:12]}")
        store.add("alice", ALICE)
    query = encoder.encode([SCI_FI_QUERY])[0]
    for read in (
        lambda: store.documents("alice"),
        lambda: store.count("alice"),
        lambda: store.search("alice", query, k=2),
        store.users,
        lambda: store.add("alice", BOB),
    ):
        with pytest.raises(StoreError, match=re.escape(proxy.url)):
            read()


def test_opening_waits_for_another_opener(
    tmp_path: Path, encoder: TextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chroma creates a new store's tables without a cross-process lock (4 processes opening one
    new store together failed 5 times in 40 with "table collections already exists"), so opening
    holds the store's lock file: while another opener holds it, this one waits, then says why."""
    from filelock import FileLock

    monkeypatch.setattr(chroma, "OPEN_TIMEOUT_S", 0.2)
    (tmp_path / "chroma").mkdir()
    with FileLock(str(tmp_path / "chroma" / OPEN_LOCK)), pytest.raises(StoreError, match=r"waited 0\.2 s"):
        ProfileStore(tmp_path / "chroma", task=TASK, encoder=encoder)
    store = ProfileStore(tmp_path / "chroma", task=TASK, encoder=encoder)  # released: opens
    store.add("alice", ALICE[:1])
    assert store.users() == ["alice"]


# ----------------------------------------------------------------------- token authentication
class TokenProxy:
    """A loopback reverse proxy in front of ``chroma run`` that forwards a request only when it
    carries ``Authorization: Bearer <token>`` (no check when ``token`` is None), answering 401
    otherwise: what nginx/Caddy do in a deployment (``chroma run`` 1.5 checks no token itself).
    Leaving the ``with`` block stops it, so the server becomes unreachable."""

    def __init__(self, upstream: str, token: str | None = None) -> None:
        self.upstream = urlparse(upstream)
        self.token = token
        self.refused = 0
        self.forwarded = 0

    def __enter__(self) -> TokenProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self) -> None:
                if proxy.token is not None and self.headers.get("Authorization") != f"Bearer {proxy.token}":
                    proxy.refused += 1
                    body = b"<html><body>401 Authorization Required</body></html>"
                    self.send_response(401)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                proxy.forwarded += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_one

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.mark.server
def test_token_authentication_through_a_proxy(
    chroma_server: str,
    encoder: TextEncoder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = f"pr-{uuid.uuid4().hex}"
    namespace = f"t{uuid.uuid4().hex[:12]}"
    with TokenProxy(chroma_server, token=token) as proxy, caplog.at_level(logging.DEBUG):
        monkeypatch.delenv(TOKEN_ENV, raising=False)
        with pytest.raises(
            StoreError, match=rf"HTTP 401: the server wants a token; set \${TOKEN_ENV}"
        ) as missing:
            ProfileStore(url=proxy.url, task=TASK, encoder=encoder, namespace=namespace)
        monkeypatch.setenv(TOKEN_ENV, f"pr-{uuid.uuid4().hex}")
        with pytest.raises(
            StoreError, match=rf"HTTP 401: the server refused the token in \${TOKEN_ENV}"
        ) as wrong:
            ProfileStore(url=proxy.url, task=TASK, encoder=encoder, namespace=namespace)
        assert proxy.forwarded == 0

        monkeypatch.setenv(TOKEN_ENV, token)
        store = ProfileStore(url=proxy.url, task=TASK, encoder=encoder, namespace=namespace)
        store.add("alice", ALICE)
        assert [doc.id for doc in store.documents("alice")] == [entry["id"] for entry in ALICE]
        assert store.search("alice", encoder.encode([ALICE[0]["text"]])[0], k=1).ids == ["a1"]
        assert store.users() == ["alice"]
        refused = proxy.refused
        assert proxy.forwarded > 0
        assert store.delete_user("alice")
        assert proxy.refused == refused  # every request of the right client carried the token
    for text in (str(missing.value), str(wrong.value), repr(store), caplog.text):
        assert token not in text
