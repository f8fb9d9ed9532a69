"""Validation sets carved from a training split, and the check that reported splits stay unseen.

Every trained part (reader, ROPG, RSPG) picks its checkpoint on a validation set; taking that
set from the split one reports on contaminates the reported number. The validation set is carved
from the training split instead, the LaMP time-based way: each user's *latest* training question
(the one whose profile reaches furthest in time), so validation, like dev and test, asks about
the user's later behaviour.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dspy

from persona_rag.dates import timestamp
from persona_rag.errors import ConfigError

__all__ = ["Carved", "carve_validation", "check_disjoint"]


@dataclass(frozen=True)
class Carved:
    """A training split cut in two.

    Attributes:
        train: what is left for training.
        val: the validation questions (never trained on).
    """

    train: list[dspy.Example]
    val: list[dspy.Example]


def _latest_date(example: dspy.Example) -> float:
    stamps = [timestamp(item.get("date")) for item in example.get("profile") or []]
    known = [s for s in stamps if s is not None]
    return max(known) if known else float("-inf")


def carve_validation(examples: Sequence[dspy.Example], *, size: int | None = None, seed: int = 0) -> Carved:
    """Hold out each user's latest question of ``examples`` for validation.

    Args:
        examples: a training split (``dspy.Example`` with ``user_id`` and ``profile``).
        size: at most this many validation questions, from users drawn at random with ``seed``
            (``None``: one per user). Users with a single question are drawn last, so the
            training set keeps at least one question of as many users as possible.
        seed: the draw of users when ``size`` limits the set.

    Without user ids every question counts as its own user; then ``size`` questions with the
    latest profiles are held out (the end of the split in time).

    Raises:
        ConfigError: when nothing would be left to train on.
    """
    examples = list(examples)
    by_user: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        user = example.get("user_id")
        by_user.setdefault(str(user) if user is not None else f"\x00{i}", []).append(i)
    # The latest question of each user: the latest profile date, then the later position in the file.
    latest = {user: max(rows, key=lambda i: (_latest_date(examples[i]), i)) for user, rows in by_user.items()}
    users = sorted(latest)
    anonymous = all(user.startswith("\x00") for user in users)
    if anonymous:
        chosen = sorted(latest.values(), key=lambda i: (_latest_date(examples[i]), i))
        chosen = chosen[len(chosen) - (size if size is not None else len(chosen)) :]
    else:
        rng = random.Random(seed)
        rng.shuffle(users)
        users.sort(key=lambda user: len(by_user[user]) == 1)  # stable: the shuffle stays within groups
        chosen = [latest[user] for user in users[: size if size is not None else len(users)]]
    held = set(chosen)
    train = [e for i, e in enumerate(examples) if i not in held]
    if not train:
        raise ConfigError(
            f"carving {len(held)} validation questions leaves no training question; lower the number "
            "of validation examples or use a larger training split"
        )
    return Carved(train=train, val=[examples[i] for i in sorted(held)])


def check_disjoint(seen: Iterable[dspy.Example], reported: Iterable[dspy.Example], *, what: str) -> None:
    """Refuse a protocol where a question used for training or selection is also reported.

    Raises:
        ConfigError: naming the overlapping question ids.
    """
    seen_ids = {str(e.get("id")) for e in seen if e.get("id") is not None}
    overlap = sorted(seen_ids & {str(e.get("id")) for e in reported if e.get("id") is not None})
    if overlap:
        shown = ", ".join(overlap[:5]) + ("..." if len(overlap) > 5 else "")
        raise ConfigError(
            f"{what}: {len(overlap)} question(s) used for training or checkpoint selection are also "
            f"in the reported split ({shown}); validate on a set carved from train (the default) and "
            "report on dev/test"
        )
