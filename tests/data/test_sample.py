"""The sample LaMP-3 task: reproducible, loadable, time-ordered, and answerable from the profile."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from persona_rag.data import load_lamp, make_sample_task
from persona_rag.data.sample import SAMPLE_INPUT_PREFIX
from persona_rag.tasks import get_task

SPLITS = ("train", "dev", "test")
SMALL = {"n_users": 3, "profile_size": 6, "questions_per_user": (3, 2, 2)}


def files(directory):
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


@pytest.fixture
def sample(tmp_path):
    return make_sample_task(tmp_path / "sample", seed=0, **SMALL)


def test_deterministic_for_a_seed(tmp_path, sample):
    again = make_sample_task(tmp_path / "again", seed=0, **SMALL)
    other = make_sample_task(tmp_path / "other", seed=1, **SMALL)
    assert sorted(files(sample)) == sorted(
        f"{s}_{kind}.json" for s in SPLITS for kind in ("questions", "outputs")
    )
    assert files(sample) == files(again)
    assert files(sample) != files(other)


def test_loads_as_lamp3_with_the_asked_sizes(sample):
    for split, per_user in zip(SPLITS, SMALL["questions_per_user"], strict=True):
        loaded = load_lamp(sample, split)
        assert loaded.task is get_task("LaMP-3")
        assert len(loaded) == SMALL["n_users"] * per_user
        assert loaded.golds is not None
        assert all(gold in {"1", "2", "3", "4", "5"} for gold in loaded.golds.values())
        for example in loaded.examples():
            assert example.input.startswith(SAMPLE_INPUT_PREFIX)
            assert all(item["score"] in {"1", "2", "3", "4", "5"} for item in example.profile)


def test_question_ids_unique_across_splits(sample):
    ids = [q.id for split in SPLITS for q in load_lamp(sample, split)]
    assert len(ids) == len(set(ids))


def test_time_order(sample):
    """Each question's profile is the user's earlier items: the next question of the same user sees
    exactly one more item (this question's own), dated after every item this question saw."""
    by_user = defaultdict(list)
    for split in SPLITS:  # train, then dev, then test: the user's questions in time order
        loaded = load_lamp(sample, split)
        for example in loaded.examples():
            by_user[example.user_id].append(example)
    assert len(by_user) == SMALL["n_users"]
    spec = get_task("LaMP-3")
    for questions in by_user.values():
        assert len(questions) == sum(SMALL["questions_per_user"])
        assert len(questions[0].profile) == SMALL["profile_size"]
        for earlier, later in itertools.pairwise(questions):
            dates = [item["date"] for item in earlier.profile]
            assert dates == sorted(dates) and len(set(dates)) == len(dates)
            assert later.profile[:-1] == earlier.profile
            added = later.profile[-1]
            assert added["date"] > max(dates)  # ISO 8601 UTC strings sort in time order
            assert added["text"] == spec.query(earlier.input)  # the earlier question's own item
            assert added["score"] == earlier.output
        spec.documents(questions[-1].profile)  # unique ids, all fields present


def test_the_answer_is_in_the_profile(sample):
    """Items of the question's genre carry the user's taste (taste +- 1 noise, so the gold is within 2
    of every one of them), and in most questions one of them is within 1 of the gold."""
    close = []
    for split in SPLITS:
        for example in load_lamp(sample, split).examples():
            genre = example.input.rsplit("genres: ", 1)[1]
            same_genre = [int(p["score"]) for p in example.profile if p["text"].endswith(f"genres: {genre}")]
            assert same_genre
            assert max(abs(int(example.output) - score) for score in same_genre) <= 2
            close.append(min(abs(int(example.output) - score) for score in same_genre) <= 1)
    assert sum(close) >= 0.8 * len(close)
