"""Make a small LaMP-3-format task whose answers depend on the user's profile.

Each simulated user has a taste per genre; their past ratings (the profile) follow that taste, and
each question asks for the rating of a new title of one genre. Retrieving the user's items of the
same genre reveals the answer, recency and random retrieval mostly do not, and no retrieval cannot
know it. It exists so the demo and tests have data of the project's own making, offline.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from persona_rag.io import atomic_write_json

__all__ = ["SAMPLE_INPUT_PREFIX", "make_sample_task"]

SAMPLE_INPUT_PREFIX = (
    "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
    "without further explanation. review: "
)
_GENRES = ("comedy", "horror", "romance", "science fiction", "documentary", "western", "musical", "thriller")
_ADJECTIVES = (
    "Silent",
    "Crimson",
    "Last",
    "Hidden",
    "Golden",
    "Broken",
    "Wild",
    "Midnight",
    "Lost",
    "Electric",
    "Frozen",
    "Secret",
    "Burning",
    "Distant",
    "Quiet",
    "Restless",
    "Paper",
    "Iron",
    "Velvet",
    "Hollow",
)
_NOUNS = (
    "Harbor",
    "Garden",
    "Signal",
    "Empire",
    "River",
    "Letter",
    "Station",
    "Mirror",
    "Orchard",
    "Voyage",
    "Kingdom",
    "Promise",
    "Canyon",
    "Lantern",
    "Circus",
    "Frontier",
    "Island",
    "Machine",
    "Carnival",
    "Bridge",
)


def _title(rng: random.Random) -> str:
    return f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"


def _rating(taste: int, rng: random.Random) -> int:
    """The user's taste with a little noise (25% of ratings move by one)."""
    noise = rng.choice((-1, 0, 0, 0, 0, 0, 0, 1))
    return min(5, max(1, taste + noise))


def make_sample_task(
    dest: str | Path,
    *,
    n_users: int = 12,
    profile_size: int = 24,
    questions_per_user: tuple[int, int, int] = (6, 3, 3),
    seed: int = 0,
) -> Path:
    """Write ``{train,dev,test}_questions.json`` and outputs of a sample rating task to ``dest``.

    Args:
        dest: directory to create or overwrite.
        n_users: number of users.
        profile_size: profile items per user before their first question.
        questions_per_user: train/dev/test questions per user, in time order (time-based split:
            every question's profile holds only that user's earlier items).
        seed: makes the data reproducible.

    Returns:
        ``dest``.
    """
    rng = random.Random(seed)
    dest = Path(dest)
    splits = ("train", "dev", "test")
    questions: dict[str, list] = {s: [] for s in splits}
    golds: dict[str, list] = {s: [] for s in splits}
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    counter = 0
    for user in range(n_users):
        taste = {genre: rng.choice((1, 1, 2, 3, 4, 5, 5)) for genre in _GENRES}
        clock = start + timedelta(days=rng.randrange(365))
        history: list[dict] = []
        # The profile, then the questions in time order; each answered question joins the profile.
        steps = [None] * profile_size + [
            s for s, count in zip(splits, questions_per_user) for _ in range(count)
        ]
        for split in steps:
            clock += timedelta(hours=rng.randrange(1, 72))
            seen = [g for g in _GENRES if any(h["genre"] == g for h in history)]
            genre = rng.choice(seen if split is not None else _GENRES)
            counter += 1
            text, score = f"{_title(rng)}, genres: {genre}", _rating(taste[genre], rng)
            if split is not None:
                qid = f"9{splits.index(split) + 1}{len(questions[split]) + 1:05d}"
                profile = [{k: v for k, v in h.items() if k != "genre"} for h in history]
                questions[split].append(
                    {
                        "id": qid,
                        "input": SAMPLE_INPUT_PREFIX + text,
                        "profile": profile,
                        "user_id": f"user{user:03d}",
                    }
                )
                golds[split].append({"id": qid, "output": str(score)})
            history.append(
                {
                    "id": f"{user:03d}{counter:05d}",
                    "date": clock.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "text": text,
                    "score": str(score),
                    "genre": genre,
                }
            )
    for split in splits:
        atomic_write_json(dest / f"{split}_questions.json", questions[split], indent=None)
        atomic_write_json(
            dest / f"{split}_outputs.json", {"task": "LaMP_3", "golds": golds[split]}, indent=None
        )
    return dest
