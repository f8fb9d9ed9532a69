"""Label matching: which label a free answer names, and the label set of many inputs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["label_union", "match_label"]


def match_label(text: str, labels: Sequence[str]) -> str:
    """The label an answer names: exact match, then the earliest label mentioned, else the text."""
    cleaned = text.strip().strip("\"'`.").strip().lower()
    for label in labels:
        if cleaned == label.lower():
            return label
    lowered = text.lower()
    found = [
        (lowered.find(label.lower()), -len(label), label) for label in labels if label.lower() in lowered
    ]
    return min(found)[2] if found else text


def label_union(label_sets: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """Every label of several label sets, once each, in order of first appearance."""
    seen: dict[str, None] = {}
    for labels in label_sets:
        seen.update(dict.fromkeys(labels))
    return tuple(seen)
