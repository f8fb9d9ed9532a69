"""The answer alone out of a model's free-text reply (``answer_extraction="first-line"``).

Small instruction models wrap a free-text answer (LaMP-4..7) in chatter ("The title for the commit
is: ...") and run on for lines, and ROUGE would score the chatter; every model, local or server,
has its reply read here. The local model also stops generating once a line holds the answer.
"""

from __future__ import annotations

import re

__all__ = ["answer_line_done", "extract_answer"]


# Words that may surround "title"/"subject"/... in an answer's preamble ("The title for the commit
# is:", "Suggested email subject:"). A closed list, so that a real subject such as "BUG: fix x" or
# "Fix title bar: ..." is never taken for a preamble.
_FILLER = (
    r"(?:the|a|an|my|this|that|your|its|new|suggested|generated|proposed|possible|final|short|"
    r"commit|email|e-mail|news|article|paper|tweet|post|message|for|of|to|is|would|could|will|be|"
    r"it|in|here|line)"
)
_PREAMBLES = (
    re.compile(r"^(?:sure|certainly|of course|okay|ok)[!,.]\s*", re.IGNORECASE),
    re.compile(r"^(?:here(?:'s|\s+is|\s+are))\b[^:\n]*:\s*", re.IGNORECASE),
    re.compile(
        rf"^(?:{_FILLER}\s+)*(?:title|subject|headline|tweet|paraphrase|answer|output)"
        rf"(?:\s+{_FILLER})*\s*(?::\s*|(?=[\"“']))",
        re.IGNORECASE,
    ),
)
_QUOTED = re.compile(r'^["“](?P<answer>.+?)["”]')  # a reply that opens with a quote: its first quoted span
_WRAPPED = re.compile(r"^(\*\*|[`'])(?P<answer>.+)\1\.?$")  # a whole line in bold, backticks or single quotes
_FENCE = re.compile(r"^(?:```|~~~)")


def _answer_in(line: str) -> str:
    """The answer a single line holds: preambles and surrounding quotes removed ("" if none).

    A line that opens with a double quote answers with its first quoted span, which also covers
    replies that copy the prompt's entry pattern (``"Fix x" is the title for "..."``).
    """
    line = line.strip()
    if _FENCE.match(line):
        return ""
    for pattern in _PREAMBLES:
        line = pattern.sub("", line, count=1).strip()
    quoted = _QUOTED.match(line) or _WRAPPED.match(line)
    return quoted["answer"].strip() if quoted else line


def _first_answer(text: str) -> str | None:
    """The first line of ``text`` that holds an answer, or ``None``.

    A line that still ends with a colon after its preamble is gone introduces the next line
    ("The user wants a subject for this commit:") and is skipped, like code fences.
    """
    for line in text.splitlines():
        answer = _answer_in(line)
        if answer and not answer.endswith(":"):
            return answer
    return None


def extract_answer(text: str) -> str:
    """The answer alone from a model's free-text reply (the ``first-line`` answer extraction).

    The first line with content, without a preamble ("Title:", "Subject:", "Sure!", "Here is
    the title:", "The title for the commit is:"), lead-in lines that end with a colon, code fences
    and surrounding quotes or bold marks. A reply with no such line gives its first non-empty line.

    Example:
        >>> extract_answer('The title for the commit is: "BUG: fix ldexp on 64 bits"\\nIt fixes ...')
        'BUG: fix ldexp on 64 bits'
    """
    answer = _first_answer(text or "")
    if answer is not None:
        return answer
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def answer_line_done(text: str) -> bool:
    """Stop rule for local generation: a complete line (before the last line break) holds the answer."""
    return _first_answer(text.rpartition("\n")[0]) is not None
