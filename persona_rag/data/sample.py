"""Make a small LaMP-3-format task (MovieLens-like ratings) whose answers depend on the user.

How it is built, so that a result on it means what it would mean on real data:

* A catalogue of movies, each with a made-up title, a year, one or two genres and a hidden
  quality. Item and question texts look like the real MovieLens task's:
  ``"The Silent Harbor (1994), genres: Comedy"``.
* Each user has a hidden mean rating and a hidden taste per genre, and tastes differ a lot
  between genres (standard deviation 1.5 stars). A rating is the user's mean, plus the mean taste
  over the movie's genres, plus the movie's quality, plus noise, rounded to 1-5. Nothing in a
  text states a rating or a taste.
* A user's profile is their earlier ratings (time-ordered; every question's profile holds only
  items dated before it, as in LaMP's time-based split).

So no item holds the answer, and the items worth reading are not the ones that look most like the
question: the user's ratings of movies *sharing its genre* tell their taste for it, while a
lexical or semantic retriever is drawn to shared title words and years, which say nothing. Every
item says something about the user's mean, so any personalised prompt beats none; a retriever
tuned on the reader's feedback can learn to prefer genre over title, which untuned similarity does
not. The movie's quality and the noise are not knowable from the profile, which bounds how good
any method can get.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from persona_rag.io import atomic_write_json

__all__ = ["SAMPLE_INPUT_PREFIX", "make_sample_task"]

SAMPLE_INPUT_PREFIX = (
    "What is the score of the following movie on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
    "without further explanation. movie: "
)
_GENRES = ("Action", "Adventure", "Animation", "Comedy", "Documentary", "Drama", "Horror", "Romance",
           "Sci-Fi", "Thriller")  # fmt: skip
_ADJECTIVES = ("Silent", "Crimson", "Last", "Hidden", "Golden", "Broken", "Wild", "Midnight", "Lost",
               "Electric", "Frozen", "Secret", "Burning", "Distant", "Quiet", "Restless", "Paper", "Iron",
               "Velvet", "Hollow")  # fmt: skip
_NOUNS = ("Harbor", "Garden", "Signal", "Empire", "River", "Letter", "Station", "Mirror", "Orchard",
          "Voyage", "Kingdom", "Promise", "Canyon", "Lantern", "Circus", "Frontier", "Island", "Machine",
          "Carnival", "Bridge")  # fmt: skip
_QUALITY_SD, _AFFINITY_SD, _NOISE_SD = 0.25, 1.5, 0.3


def _catalogue(rng: random.Random, size: int) -> list[tuple[str, tuple[str, ...], float]]:
    """Movies as (text, genres, quality)."""
    movies = []
    for _ in range(size):
        genres = tuple(sorted(rng.sample(_GENRES, rng.choice((1, 1, 2)))))
        title = f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} ({rng.randrange(1950, 2021)})"
        movies.append((f"{title}, genres: {', '.join(genres)}", genres, rng.gauss(0.0, _QUALITY_SD)))
    return movies


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
    per_user = profile_size + sum(questions_per_user)
    movies = _catalogue(rng, max(200, 2 * per_user))
    questions: dict[str, list] = {s: [] for s in splits}
    golds: dict[str, list] = {s: [] for s in splits}
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    counter = 0
    for user in range(n_users):
        mean = rng.uniform(2.2, 4.2)
        affinity = {genre: rng.gauss(0.0, _AFFINITY_SD) for genre in _GENRES}
        clock = start + timedelta(days=rng.randrange(365))
        history: list[dict] = []
        # The profile, then the questions in time order; each answered question joins the profile.
        steps = [None] * profile_size + [
            s for s, count in zip(splits, questions_per_user) for _ in range(count)
        ]
        for split, (text, genres, quality) in zip(steps, rng.sample(movies, per_user)):
            clock += timedelta(hours=rng.randrange(1, 72))
            counter += 1
            taste = sum(affinity[g] for g in genres) / len(genres)
            score = min(5, max(1, round(mean + taste + quality + rng.gauss(0.0, _NOISE_SD))))
            if split is not None:
                qid = f"9{splits.index(split) + 1}{len(questions[split]) + 1:05d}"
                questions[split].append(
                    {
                        "id": qid,
                        "input": SAMPLE_INPUT_PREFIX + text,
                        "profile": list(history),
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
                }
            )
    for split in splits:
        atomic_write_json(dest / f"{split}_questions.json", questions[split], indent=None)
        atomic_write_json(
            dest / f"{split}_outputs.json", {"task": "LaMP_3", "golds": golds[split]}, indent=None
        )
    return dest
