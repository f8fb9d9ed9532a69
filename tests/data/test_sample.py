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


def _genres(text):
    return set(text.rsplit("genres: ", 1)[1].split(", "))


def test_items_of_shared_genres_inform_and_no_text_gives_the_answer_away(tmp_path):
    """Ratings follow the user's genre tastes: the user's items that share a genre with the asked
    movie are closer to the gold than their other items, no text states a rating, and the golds
    are spread (a constant answer cannot do well)."""
    data = make_sample_task(tmp_path / "mid", n_users=20, seed=0)
    shared, other, golds = [], [], []
    for split in SPLITS:
        for example in load_lamp(data, split).examples():
            gold = int(example.output)
            golds.append(gold)
            asked = _genres(example.input)
            for item in example.profile:
                assert not any(digit in item["text"].split("(")[0] for digit in "12345")
                (shared if _genres(item["text"]) & asked else other).append(abs(int(item["score"]) - gold))
    assert sum(shared) / len(shared) < 0.85 * sum(other) / len(other)
    assert len(set(golds)) == 5 and max(golds.count(g) for g in set(golds)) < 0.5 * len(golds)
