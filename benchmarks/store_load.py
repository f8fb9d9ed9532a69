"""ProfileStore under load: a ``chroma run`` server on loopback against the embedded store, one run.

Per backend, ``--users`` users x ``--items`` items (LaMP-3 items, MovieLens-style texts). The
first half of the users is written before the clock starts; then ``--writers`` processes write
the other half (one ``add`` per user: embedding and upsert) while ``--readers`` processes query
random users of the whole set (``ProfileStore.search``, k=4, precomputed query vectors) until the
writers are done. Reported: the writers' items/s, the readers' queries/s and p50/p99 latency, and
isolation: every hit of every query must be an item of the user queried (item ids carry their
user), and every user must end with exactly ``--items`` items.

    python benchmarks/store_load.py --users 16 --items 20 --writers 2 --readers 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

TASK = "LaMP-3"
GENRES = ["Drama", "Comedy", "Horror", "Sci-Fi", "Romance", "Animation", "Thriller", "Western"]
QUERIES = [f"A new {genre} film (2001), genres: {genre}" for genre in GENRES]


def _profile(user: str, items: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{user}:{i}",
            "date": f"2001-03-{1 + i % 28:02d}T12:00:00Z",
            "text": f"Movie {user}-{i} (19{50 + i % 50}), genres: {GENRES[(i + len(user)) % len(GENRES)]}",
            "score": str(1 + i % 5),
        }
        for i in range(items)
    ]


def _store(where: dict[str, str]) -> Any:
    from persona_rag.store import ProfileStore

    return ProfileStore(**where, task=TASK, namespace="load")


def _writer(where: dict[str, str], users: list[str], items: int, start: Any, out: Any) -> None:
    store = _store(where)  # loads the encoder before the clock starts
    start.wait()
    for user in users:
        store.add(user, _profile(user, items))
    out.put({"kind": "writer", "items": len(users) * items})


def _reader(where: dict[str, str], users: list[str], seed: int, start: Any, stop: Any, out: Any) -> None:
    store = _store(where)
    vectors = store.encoder.encode(QUERIES)
    rng = random.Random(seed)
    latencies, foreign, empty = [], 0, 0
    start.wait()
    while not stop.is_set():
        user = rng.choice(users)
        began = time.perf_counter()
        result = store.search(user, vectors[rng.randrange(len(QUERIES))], k=4)
        latencies.append(time.perf_counter() - began)
        foreign += sum(not hit.id.startswith(f"{user}:") for hit in result.hits)
        empty += not result.hits
    out.put({"kind": "reader", "latencies": latencies, "foreign": foreign, "empty": empty})


def _run(where: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    users = [f"user{u:03d}" for u in range(args.users)]
    early, late = users[: args.users // 2], users[args.users // 2 :]
    store = _store(where)
    for user in early:
        store.add(user, _profile(user, args.items))
    ctx = mp.get_context("spawn")
    start, stop, out = ctx.Barrier(args.writers + args.readers + 1), ctx.Event(), ctx.Queue()
    shares = [late[w :: args.writers] for w in range(args.writers)]
    writers = [ctx.Process(target=_writer, args=(where, share, args.items, start, out)) for share in shares]
    readers = [
        ctx.Process(target=_reader, args=(where, users, seed, start, stop, out))
        for seed in range(args.readers)
    ]
    for process in writers + readers:
        process.start()
    start.wait()  # every worker has loaded its encoder and opened the store
    began = time.perf_counter()
    reports = [out.get() for _ in writers]
    seconds = time.perf_counter() - began
    stop.set()
    reports += [out.get() for _ in readers]
    for process in writers + readers:
        process.join()
    latencies = sorted(x for r in reports if r["kind"] == "reader" for x in r["latencies"])
    counts = {user: store.count(user) for user in users}
    return {
        "seconds": seconds,
        "items_per_s": sum(r["items"] for r in reports if r["kind"] == "writer") / seconds,
        "queries": len(latencies),
        "queries_per_s": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "foreign_hits": sum(r["foreign"] for r in reports if r["kind"] == "reader"),
        "empty_results": sum(r["empty"] for r in reports if r["kind"] == "reader"),
        "users_complete": sum(count == args.items for count in counts.values()),
    }


def _chroma_server(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    chroma = Path(sys.executable).parent / "chroma"
    process = subprocess.Popen(
        [str(chroma), "run", "--path", str(root / "server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2):
                return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"chroma run did not start (exit code {process.poll()})") from None
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--readers", type=int, default=2)
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="store-load-"))
    results = {"embedded": _run({"path": str(root / "embedded")}, args)}
    server, url = _chroma_server(root)
    try:
        results["server"] = _run({"url": url}, args)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps({"size": vars(args), **results}, indent=2))
    print("| backend | items/s | queries/s | p50 ms | p99 ms | queries | foreign hits | users complete |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['items_per_s']:.1f} | {r['queries_per_s']:.1f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['queries']} | {r['foreign_hits']} | {r['users_complete']}/{args.users} |"
        )
    ratio = results["server"]["queries_per_s"] / results["embedded"]["queries_per_s"]
    print(f"server / embedded queries/s: {ratio:.2f}x")
    return 1 if any(r["foreign_hits"] or r["users_complete"] != args.users for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
