import dspy
import pytest

from persona_rag.data import carve_validation, check_disjoint


def _example(qid: str, user: str | None, dates: list[str]) -> dspy.Example:
    profile = [{"id": f"{qid}-{i}", "date": d, "text": "x", "score": "3"} for i, d in enumerate(dates)]
    return dspy.Example(id=qid, input="q", profile=profile, user_id=user, output="3")


def test_each_users_latest_question_is_held_out_by_profile_date():
    examples = [
        _example("a2", "a", ["2001-01-01", "2003-01-01"]),  # a's latest, though listed first
        _example("a1", "a", ["2001-01-01"]),
        _example("b1", "b", ["2002-01-01"]),
        _example("b2", "b", ["2002-01-01", "2002-06-01"]),
    ]
    carved = carve_validation(examples)
    assert sorted(e.id for e in carved.val) == ["a2", "b2"]
    assert sorted(e.id for e in carved.train) == ["a1", "b1"]


def test_size_limits_users_and_is_reproducible():
    examples = [_example(f"{u}{i}", str(u), [f"200{i}-01-01"]) for u in range(10) for i in range(1, 3)]
    first = carve_validation(examples, size=3, seed=1)
    again = carve_validation(examples, size=3, seed=1)
    assert [e.id for e in first.val] == [e.id for e in again.val]
    assert len(first.val) == 3 and all(e.id.endswith("2") for e in first.val)
    assert len(first.train) == 17


def test_without_users_the_latest_profiles_are_held_out():
    examples = [_example(f"q{i}", None, [f"200{i}-01-01"]) for i in range(5)]
    assert [e.id for e in carve_validation(examples, size=2).val] == ["q3", "q4"]


def test_nothing_left_to_train_is_an_error():
    with pytest.raises(ValueError, match="no training question"):
        carve_validation([_example("a1", "a", ["2001-01-01"])])


def test_overlap_with_the_reported_split_is_refused():
    train = [_example("x1", "a", []), _example("x2", "b", [])]
    check_disjoint(train, [_example("y1", "a", [])], what="report")
    with pytest.raises(ValueError, match="x2"):
        check_disjoint(train, [_example("x2", "b", [])], what="report")
