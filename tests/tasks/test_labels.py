"""Which label an answer names: exact under LaMP's reading, found inside the answer under the lenient one."""

from __future__ import annotations

import pytest

from persona_rag.tasks import get_task
from tests.tasks.inputs import CITATION_INPUT, TAGGING_INPUT, lenient


@pytest.mark.parametrize(
    ("text", "lamp", "lenient_label"),
    [
        ("comedy", "comedy", "comedy"),
        ("  romance  ", "romance", "romance"),
        ("Comedy", "Comedy", "comedy"),  # LaMP compares case-sensitively: wrong
        ('"Sci-Fi".', '"Sci-Fi".', "sci-fi"),
        ("I would say dark comedy.", "I would say dark comedy.", "dark comedy"),  # longer label wins
        ("comedy, or maybe action", "comedy, or maybe action", "comedy"),  # earliest mention
        ("The answer is action, not comedy", "The answer is action, not comedy", "action"),
        ("no idea at all", "no idea at all", "no idea at all"),  # no label: the text is kept
    ],
)
def test_parse_labels(text, lamp, lenient_label):
    assert get_task("LaMP-2").parse(text, TAGGING_INPUT) == lamp
    assert lenient("LaMP-2").parse(text, TAGGING_INPUT) == lenient_label


def test_parse_citation_labels():
    assert get_task("LaMP-1").parse("[2]", CITATION_INPUT) == "[2]"
    assert get_task("LaMP-1").parse("The answer is [1].", CITATION_INPUT) == "The answer is [1]."
    assert lenient("LaMP-1").parse("The answer is [1].", CITATION_INPUT) == "[1]"


def test_lenient_parse_uses_the_inputs_own_tag_list():
    spec = lenient("LaMP-2")
    input = "tags: [atmospheric, funny, superhero] description: x"
    assert spec.parse("Funny!", input) == "funny"
    assert spec.parse("It is a comedy", input) == "It is a comedy"  # comedy is not offered here
