"""LaMP download: URL layout, and fetching from a real HTTP server on loopback."""

from __future__ import annotations

import functools
import http.server
import json
import socket
import threading
import time

import pytest

from persona_rag.data import LAMP_BASE_URL, download_lamp, lamp_urls, load_lamp
from persona_rag.errors import DownloadError
from persona_rag.tasks import TaskSpec


# ------------------------------------------------------------------------------- URL layout
def test_user_based_urls():
    assert lamp_urls("LaMP-3", "dev", setting="user") == {
        "dev_questions.json": f"{LAMP_BASE_URL}/LaMP_3/dev/dev_questions.json",
        "dev_outputs.json": f"{LAMP_BASE_URL}/LaMP_3/dev/dev_outputs.json",
    }


def test_time_based_urls_are_the_default():
    # The paper's Table 3 is on the time-based split.
    expected = {
        "train_questions.json": f"{LAMP_BASE_URL}/time/LaMP_5/train/train_questions.json",
        "train_outputs.json": f"{LAMP_BASE_URL}/time/LaMP_5/train/train_outputs.json",
    }
    assert lamp_urls("LaMP_5", "train") == expected
    assert lamp_urls("LaMP_5", "train", setting="time") == expected


def test_test_split_has_no_outputs_file():
    assert lamp_urls("LaMP-1", "test") == {
        "test_questions.json": f"{LAMP_BASE_URL}/time/LaMP_1/test/test_questions.json"
    }


def test_movie_tagging_and_news_categorization_directories():
    assert (
        lamp_urls("LaMP-2", "dev")["dev_questions.json"]
        == f"{LAMP_BASE_URL}/time/LaMP_2/new/dev/dev_questions.json"
    )
    assert (
        lamp_urls("LaMP-2N", "dev", setting="user")["dev_questions.json"]
        == f"{LAMP_BASE_URL}/LaMP_2/old/dev/dev_questions.json"
    )


def test_base_url_trailing_slash():
    assert lamp_urls("LaMP-7", "test", base_url="http://mirror/lamp/") == {
        "test_questions.json": "http://mirror/lamp/time/LaMP_7/test/test_questions.json"
    }


def test_lamp6_is_not_public():
    with pytest.raises(DownloadError, match="not public"):
        lamp_urls("LaMP-6", "dev")


def test_user_task_cannot_be_downloaded():
    spec = TaskSpec(
        name="Mine",
        kind="generation",
        profile_fields=("text",),
        document_template="{text}",
        entry_template="{text}",
    )
    with pytest.raises(DownloadError, match="not an official LaMP task"):
        lamp_urls(spec, "dev")  # type: ignore[arg-type]


def test_bad_setting():
    with pytest.raises(ValueError, match="setting"):
        lamp_urls("LaMP-3", "dev", setting="global")


# --------------------------------------------------------------------------- loopback server
@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback requests must not go through a proxy configured in the environment."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):
        self.requests.append(self.path)
        if self.path.endswith("broken.json") or "/LaMP_4/" in self.path:
            # A partial transfer: announce 1000 bytes, send a few, hang up.
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'[{"id"')
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path/site``; yields (base_url, site, request log)."""
    site = tmp_path / "site"
    (site / "time" / "LaMP_3" / "dev").mkdir(parents=True)
    questions = [{"id": "q1", "input": "review: fine", "profile": [{"id": "p1", "text": "ok", "score": "4"}]}]
    (site / "time" / "LaMP_3" / "dev" / "dev_questions.json").write_text(json.dumps(questions))
    (site / "time" / "LaMP_3" / "dev" / "dev_outputs.json").write_text(
        json.dumps({"task": "LaMP_3", "golds": [{"id": "q1", "output": "4"}]})
    )
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", site, requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_download_writes_files_and_skips_existing(server, tmp_path):
    base_url, site, requests = server
    dest = tmp_path / "data" / "LaMP_3"
    assert download_lamp("LaMP-3", "dev", dest, base_url=base_url, timeout=5) == dest
    for name in ("dev_questions.json", "dev_outputs.json"):
        assert (dest / name).read_bytes() == (site / "time" / "LaMP_3" / "dev" / name).read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == [
        "dev_outputs.json",
        "dev_questions.json",
    ]  # no temp files
    assert len(requests) == 2
    assert len(load_lamp(dest, "dev")) == 1

    download_lamp("LaMP-3", "dev", dest, base_url=base_url, timeout=5)
    assert len(requests) == 2  # both files were there: nothing fetched

    (dest / "dev_outputs.json").unlink()
    download_lamp("LaMP-3", "dev", dest, base_url=base_url, timeout=5)
    assert requests[2:] == ["/time/LaMP_3/dev/dev_outputs.json"]  # only the missing file


def test_http_404(server, tmp_path):
    base_url, _, _ = server
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download_lamp("LaMP-5", "dev", tmp_path / "out", base_url=base_url, timeout=5)
    assert f"{base_url}/time/LaMP_5/dev/dev_questions.json" in str(info.value)
    assert not (tmp_path / "out" / "dev_questions.json").exists()


def test_partial_transfer_is_a_download_error_and_writes_nothing(server, tmp_path):
    base_url, _, _ = server
    dest = tmp_path / "out"
    with pytest.raises(DownloadError, match="partial transfer"):
        download_lamp("LaMP-4", "dev", dest, base_url=base_url, timeout=5)
    assert not dest.exists() or list(dest.iterdir()) == []


def test_unreachable_server_fails_fast(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download_lamp("LaMP-3", "dev", tmp_path / "out", base_url=f"http://127.0.0.1:{port}", timeout=5)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert f"cannot reach http://127.0.0.1:{port}/time/LaMP_3/dev/" in message
    assert "offline" in message and str(tmp_path / "out") in message
    assert isinstance(info.value, OSError)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
