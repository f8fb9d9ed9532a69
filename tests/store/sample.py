"""What the store tests write: small hand-written LaMP-3 profiles (MovieLens-style item texts)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from persona_rag.store import ProfileStore
from persona_rag.tasks import get_task

TASK = get_task("LaMP-3")

StoreFactory = Callable[..., ProfileStore]
"""``make_store(namespace=..., encoder=...)`` (the ``make_store`` fixture)."""


def item(item_id: str, text: str, score: int | str, day: int = 1) -> dict[str, Any]:
    return {"id": item_id, "date": f"2001-03-{day:02d}T12:00:00Z", "text": text, "score": str(score)}


ALICE = [
    item("a1", "Toy Story (1995), genres: Adventure, Animation, Children, Comedy, Fantasy", 5, 1),
    item("a2", "Jumanji (1995), genres: Adventure, Children, Fantasy", 3, 2),
    item("a3", "Grumpier Old Men (1995), genres: Comedy, Romance", 2, 3),
    item("a4", "Father of the Bride Part II (1995), genres: Comedy", 3, 4),
    item("a5", "Sabrina (1995), genres: Comedy, Romance", 4, 5),
    item("a6", "Babe (1995), genres: Children, Drama", 4, 6),
]
BOB = [
    item("b1", "Alien (1979), genres: Horror, Sci-Fi", 5, 1),
    item("b2", "Aliens (1986), genres: Action, Adventure, Horror, Sci-Fi", 4, 2),
    item("b3", "Star Wars: Episode IV - A New Hope (1977), genres: Action, Adventure, Sci-Fi", 5, 3),
    item("b4", "The Terminator (1984), genres: Action, Sci-Fi, Thriller", 4, 4),
]
SCI_FI_QUERY = "Alien (1979), genres: Horror, Sci-Fi"  # one of Bob's items, word for word


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
