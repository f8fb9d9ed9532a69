"""Profile dates: one parser for every component that orders or filters items by time.

LaMP files carry dates in several layouts (ISO 8601 in the time-based splits, ``YYYY/MM/DD`` or
``Month D, YYYY`` in others); recency ranking, the store's time filter and the carving of a
validation set out of a training split must all read them the same way.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["timestamp"]

_LAYOUTS = ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d", "%m/%d/%Y", "%d %B %Y", "%B %d, %Y", "%Y")


def timestamp(date: str | None) -> float | None:
    """Seconds since the epoch for a LaMP date string, or ``None`` when it is missing or unreadable.

    Dates without a zone are read as UTC, so the result does not depend on the machine's zone.
    """
    if not date:
        return None
    text = date.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
        for layout in _LAYOUTS:
            try:
                parsed = datetime.strptime(text, layout)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()
