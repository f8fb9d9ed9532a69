"""Retrieval speed: our cached retrievers against rebuilding the index for every query.

The LaMP authors' code rebuilds a ``rank_bm25`` index (BM25) or re-encodes the whole profile
(Contriever) for every question. Our :class:`BM25Retriever` keeps each profile's index
in an LRU cache (an inverted index with precomputed weights) and our :class:`DenseRetriever`
caches every text's embedding, so repeated queries over the same users (several epochs,
retrievers or ``k`` values over one split) reuse the work.

One run measures, over the same questions of a LaMP-3-format split, each query run ``--repeats``
times (a pass over all questions, repeated):

* BM25: ``BM25Retriever()`` (bm25s, Lucene variant) and ``BM25Retriever(method="robertson")``
  against a ``rank_bm25.BM25Okapi`` index rebuilt for every query, with the same tokenizer.
* Dense: ``DenseRetriever`` against re-encoding the whole profile for every query with an
  uncached encoder, same model (all-MiniLM-L6-v2) and the same batching code.

It reports wall times, the speed-up (baseline time / our time), the time of the first (cold)
pass and of the later (warm) passes, and how far the two agree: the mean top-k overlap
``|ours ∩ baseline| / min(k, profile size)`` and the share of identical ranked lists. Ties are
broken by profile position for both sides.

    python benchmarks/retrieval.py                       # dev split, 200 questions, k=4, 10 passes
    python benchmarks/retrieval.py --split train --out retrieval.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import numpy as np
import torch
from rank_bm25 import BM25Okapi
from rich.console import Console
from rich.table import Table

from persona_rag.data import load_lamp
from persona_rag.encoders import DEFAULT_ENCODER, TextEncoder
from persona_rag.retrievers import BM25Retriever, DenseRetriever, RetrievalResult, top_k
from persona_rag.retrievers.bm25 import tokenize
from persona_rag.tasks import Document

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "lamp-real" / "movielens_rating"


@dataclass(frozen=True)
class Query:
    question: str
    user: str
    text: str
    documents: Sequence[Document]


@dataclass
class Timing:
    """Wall time of each pass over the queries, and the ranked ids of the first pass."""

    passes: list[float] = field(default_factory=list)
    ids: list[list[str]] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.passes)


@dataclass
class Row:
    name: str
    ours: str
    baseline: str
    queries: int
    repeats: int
    ours_s: float
    baseline_s: float
    ours_first_pass_s: float
    ours_later_ms_per_query: float | None
    baseline_ms_per_query: float
    overlap: float
    identical: float
    note: str = ""

    @property
    def speedup(self) -> float:
        return self.baseline_s / self.ours_s

    @property
    def warm_speedup(self) -> float | None:
        if not self.ours_later_ms_per_query:
            return None
        return self.baseline_ms_per_query / self.ours_later_ms_per_query


def load_queries(data: Path, split: str, limit: int | None) -> list[Query]:
    lamp = load_lamp(data, split, limit=limit)
    task = lamp.task
    queries = []
    for question in lamp.questions:
        profile = [item.model_dump(exclude_none=True) for item in question.profile]
        user = question.user_id or question.id
        queries.append(Query(question.id, user, task.query(question.input), task.documents(profile)))
    return queries


Search = Callable[[str, Sequence[Document]], RetrievalResult]


def run(search: Search, queries: Sequence[Query], repeats: int) -> Timing:
    timing = Timing()
    for repeat in range(repeats):
        ids = []
        start = time.perf_counter()
        for query in queries:
            ids.append(search(query.text, query.documents).ids)
        timing.passes.append(time.perf_counter() - start)
        if repeat == 0:
            timing.ids = ids
    return timing


def agreement(ours: Timing, baseline: Timing, queries: Sequence[Query], k: int) -> tuple[float, float]:
    overlaps, identical = [], []
    for a, b, query in zip(ours.ids, baseline.ids, queries, strict=True):
        overlaps.append(len(set(a) & set(b)) / max(1, min(k, len(query.documents))))
        identical.append(a == b)
    return float(np.mean(overlaps)), float(np.mean(identical))


def make_row(
    name: str, ours_label: str, baseline_label: str, ours: Timing, baseline: Timing, queries: Sequence[Query],
    k: int, note: str = "",
) -> Row:  # fmt: skip
    n, repeats = len(queries), len(ours.passes)
    overlap, identical = agreement(ours, baseline, queries, k)
    later = sum(ours.passes[1:]) / (n * (repeats - 1)) * 1000 if repeats > 1 else None
    return Row(
        name=name, ours=ours_label, baseline=baseline_label, queries=n, repeats=repeats,
        ours_s=ours.total, baseline_s=baseline.total, ours_first_pass_s=ours.passes[0],
        ours_later_ms_per_query=later, baseline_ms_per_query=baseline.total / (n * repeats) * 1000,
        overlap=overlap, identical=identical, note=note,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ baselines
def bm25_rebuilt(k: int, epsilon: float = 0.25) -> Search:
    """The authors' BM25: a rank_bm25 index over the tokenized profile, built for each query.

    ``epsilon`` is rank_bm25's floor for negative idf values (its default 0.25); with 0 it is the
    plain Robertson variant, the same as ``BM25Retriever(method="robertson")``.
    """

    def search(query: str, documents: Sequence[Document]) -> RetrievalResult:
        index = BM25Okapi([tokenize(doc.text) for doc in documents], epsilon=epsilon)
        return top_k(index.get_scores(tokenize(query)), documents, k)

    return search


def dense_reencoded(encoder: TextEncoder, k: int) -> Search:
    """The authors' dense retrieval: the query and the whole profile encoded for each query."""

    def search(query: str, documents: Sequence[Document]) -> RetrievalResult:
        embeddings = encoder.encode([query, *(doc.text for doc in documents)])  # cache_size=0: all computed
        return top_k((embeddings[1:] @ embeddings[0]).astype(np.float64), documents, k)

    return search


# ------------------------------------------------------------------------------------------ main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LaMP-3-format task directory")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--limit", type=int, default=200, help="questions used (the first N)")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10, help="passes over the questions")
    parser.add_argument(
        "--dense-limit", type=int, default=20,
        help="questions in the dense comparison: the first N of --limit (re-encoding is slow on CPU)",
    )  # fmt: skip
    parser.add_argument("--encoder", default=DEFAULT_ENCODER)
    parser.add_argument("--skip-dense", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    return parser.parse_args(argv)


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "load_average_at_end": [round(x, 2) for x in load] if load else None,
    }


COLUMNS = (
    "retriever", "queries × passes", "ours s", "baseline s", "speed-up", "ours 1st pass s",
    "ours later ms/q", "baseline ms/q", "warm speed-up", "top-k overlap", "identical top-k",
)  # fmt: skip


def table(rows: Sequence[Row], title: str) -> Table:
    out = Table(title=title)
    for column in COLUMNS:
        out.add_column(column, justify="left" if column == "retriever" else "right")
    for row in rows:
        warm = row.warm_speedup
        out.add_row(
            row.name,
            f"{row.queries} × {row.repeats}",
            f"{row.ours_s:.2f}",
            f"{row.baseline_s:.2f}",
            f"{row.speedup:.1f}×",
            f"{row.ours_first_pass_s:.2f}",
            "-" if row.ours_later_ms_per_query is None else f"{row.ours_later_ms_per_query:.3f}",
            f"{row.baseline_ms_per_query:.3f}",
            "-" if warm is None else f"{warm:.1f}×",
            f"{row.overlap:.3f}",
            f"{row.identical:.3f}",
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repeats < 1 or args.k < 1:
        raise SystemExit("--repeats and --k must be at least 1")
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # keep the table on one line per row in logs
    load_at_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    started = time.perf_counter()
    queries = load_queries(args.data, args.split, args.limit)
    users = len({query.user for query in queries})
    items = sum(len(query.documents) for query in queries)
    console.print(
        f"{args.data.name}/{args.split}: {len(queries)} questions, {users} users, "
        f"{items / len(queries):.1f} profile items per question; k={args.k}, {args.repeats} passes"
    )
    rows: list[Row] = []

    # BM25. Warm-up on a throwaway profile so that no side pays first-call costs.
    warmup = queries[0].documents[:3]
    rank_bm25 = bm25_rebuilt(args.k)
    rank_bm25("warm up", warmup)
    BM25Retriever().search("warm up", warmup, args.k)
    baselines = {
        "rank_bm25 BM25Okapi rebuilt per query": run(rank_bm25, queries, args.repeats),
        "rank_bm25 BM25Okapi(epsilon=0) rebuilt per query": run(
            bm25_rebuilt(args.k, 0.0), queries, args.repeats
        ),
    }
    pairs = [
        ("lucene", "rank_bm25 BM25Okapi rebuilt per query"),
        ("robertson", "rank_bm25 BM25Okapi rebuilt per query"),
        ("robertson", "rank_bm25 BM25Okapi(epsilon=0) rebuilt per query"),  # the same variant
    ]
    for method, label in pairs:
        retriever = BM25Retriever(method=method)
        ours = run(lambda q, d, r=retriever: r.search(q, d, args.k), queries, args.repeats)
        name = f"BM25 {method}" + (" vs eps=0" if "epsilon=0" in label else "")
        rows.append(
            make_row(
                name,
                f"BM25Retriever(method={method!r}) cached",
                label,
                ours,
                baselines[label],
                queries,
                args.k,
            )
        )

    # Dense.
    if not args.skip_dense:
        dense_queries = queries[: args.dense_limit]
        cached = TextEncoder(args.encoder)
        uncached = TextEncoder(args.encoder, cache_size=0)
        for encoder in (cached, uncached):
            encoder.encode(["warm up", "another warm-up text"])
        cached.clear_cache()
        retriever = DenseRetriever(encoder=cached)
        ours = run(lambda q, d: retriever.search(q, d, args.k), dense_queries, args.repeats)
        baseline = run(dense_reencoded(uncached, args.k), dense_queries, args.repeats)
        note = (
            f"first {len(dense_queries)} of the {len(queries)} questions (--dense-limit)"
            if len(dense_queries) < len(queries) else ""
        )  # fmt: skip
        rows.append(
            make_row(f"dense {args.encoder}", "DenseRetriever, embeddings cached",
                     "whole profile re-encoded per query", ours, baseline, dense_queries, args.k, note)
        )  # fmt: skip

    elapsed = time.perf_counter() - started
    info = machine()
    console.print(table(rows, f"Retrieval speed, {args.data.name}/{args.split}, k={args.k}"))
    for row in rows:
        console.print(f"{row.name}: {row.ours} vs {row.baseline}" + (f"; {row.note}" if row.note else ""))
    console.print(
        "speed-up = baseline s / ours s over all passes; "
        "warm speed-up = baseline ms/q / ours ms/q in passes 2+; "
        "overlap = mean |top-k ∩ top-k| / min(k, profile size)"
    )
    info["load_average_at_start"] = [round(x, 2) for x in load_at_start] if load_at_start else None
    console.print(
        f"machine: {info['cpus']} CPUs, torch threads {info['torch_threads']}, {info['platform']}; "
        f"load average (1/5/15 min) at start {info['load_average_at_start']}, "
        f"at end {info['load_average_at_end']}; benchmark wall time {elapsed:.0f} s"
    )
    if args.out:
        payload = {
            "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
            "data": str(args.data), "split": args.split, "limit": args.limit, "k": args.k,
            "repeats": args.repeats, "dense_limit": args.dense_limit, "encoder": args.encoder,
            "questions": len(queries), "users": users, "profile_items": items, "machine": info,
            "wall_s": elapsed,
            "rows": [
                {**asdict(row), "speedup": row.speedup, "warm_speedup": row.warm_speedup} for row in rows
            ],
        }  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
