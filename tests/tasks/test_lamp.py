"""The LaMP task definitions: kinds and metrics, each task's query, prompt and label set."""

from __future__ import annotations

import pytest

from persona_rag import tasks
from persona_rag.tasks import get_task
from tests.tasks.inputs import CITATION_INPUT, MOVIELENS_RATING_INPUT, RATING_INPUT, TAGGING_INPUT


@pytest.mark.parametrize(
    ("name", "kind", "primary", "lower"),
    [
        ("LaMP-1", "classification", "accuracy", False),
        ("LaMP-3", "rating", "MAE", True),
        ("LaMP-5", "generation", "rouge-1", False),
    ],
)
def test_kind_primary_metric_and_direction(name, kind, primary, lower):
    spec = get_task(name)
    assert spec.kind == kind
    assert spec.primary_metric == primary
    assert spec.lower_is_better is lower


@pytest.mark.parametrize(
    ("name", "input", "query"),
    [
        ("LaMP-1", CITATION_INPUT, "Graph kernels Neural ranking models"),
        ("LaMP-2", TAGGING_INPUT, "A robot falls in love."),
        (
            "LaMP-2N",
            "Which category does this article relate to among the following categories? "
            "categories: [travel, business] article: Markets fell: a report",
            "Markets fell: a report",
        ),
        ("LaMP-3", RATING_INPUT, "Great blender: works well"),
        # MovieLens-style input has no "review:": the text after the first colon is the query.
        ("LaMP-3", MOVIELENS_RATING_INPUT, "Back to the Future Part III (1990), genres: Adventure, Western"),
        ("LaMP-4", "Generate a headline for the following article: Stocks rose today.", "Stocks rose today."),
        ("LaMP-5", "Generate a title for the following abstract of a paper: We study X.", "We study X."),
        (
            "LaMP-6",
            "Generate a subject for the following email: Meeting at 3: bring notes",
            "Meeting at 3: bring notes",
        ),
        (
            "LaMP-7",
            "Paraphrase the following tweet without any explanation before or after it: I love it: really",
            "I love it: really",
        ),
    ],
)
def test_query_extraction(name, input, query):
    assert get_task(name).query(input) == query


PROMPT_CASES = [
    (
        "LaMP-1",
        CITATION_INPUT,
        [{"id": "1", "title": "Kernels", "abstract": "a"}, {"id": "2", "title": "Ranking", "abstract": "b"}],
        'For an author who has written the paper with the title, and "Kernels", and "Ranking" "Deep Nets", '
        "which reference is related?",
    ),
    (
        "LaMP-2",
        TAGGING_INPUT,
        [
            {"id": "1", "description": "A space war.", "tag": "sci-fi"},
            {"id": "2", "description": "Jokes.", "tag": "comedy"},
        ],
        'the tag for the movie: "A space war." is "sci-fi", and the tag for the movie: "Jokes." is "comedy". '
        "Which tag does this movie",
    ),
    (
        "LaMP-2N",
        "article: x",
        [{"id": "1", "text": "Rates rise.", "category": "business"}],
        'the category for the article: "Rates rise." is "business". article: x',
    ),
    (
        "LaMP-3",
        RATING_INPUT,
        [{"id": "1", "text": "Broke fast.", "score": "1"}, {"id": "2", "text": "Fine.", "score": 4}],
        '1 is the score for "Broke fast.", and 4 is the score for "Fine.". What is the score',
    ),
    (
        "LaMP-4",
        "Generate a headline for the following article: x",
        [{"id": "1", "title": "Rain", "text": "It rained."}],
        '"Rain" is the title for "It rained.". Generate a headline',
    ),
    (
        "LaMP-5",
        "Generate a title for the following abstract of a paper: x",
        [{"id": "1", "title": "On X", "abstract": "We study X."}],
        '"On X" is the title for "We study X.". Following the given patterns Generate a title',
    ),
    (
        "LaMP-6",
        "Generate a subject for the following email: x",
        [{"id": "1", "title": "Lunch", "text": "Noon?"}],
        '"Lunch" is the title for "Noon?". Generate a subject',
    ),
    (
        "LaMP-7",
        "Paraphrase the following tweet without any explanation before or after it: x",
        [{"id": "1", "text": "so tired"}, {"id": "2", "text": "coffee now"}],
        '"so tired", and "coffee now" are written by a person. Following the given patterns Paraphrase the',
    ),
]


@pytest.mark.parametrize(("name", "input", "items", "start"), PROMPT_CASES, ids=[c[0] for c in PROMPT_CASES])
def test_prompt_combination(name, input, items, start):
    prompt = get_task(name).prompt(input, items)
    assert prompt.startswith(start)
    if name == "LaMP-1":
        assert prompt.endswith('[2]: "Neural ranking models"')
    else:
        assert prompt.endswith(input)


def test_lamp1_without_title_word_puts_entries_first():
    prompt = get_task("LaMP-1").prompt(
        'Which reference? [1]: "a" [2]: "b"', [{"id": "1", "title": "T", "abstract": "A"}]
    )
    assert prompt == '"T". Which reference? [1]: "a" [2]: "b"'


def test_labels_for():
    assert get_task("LaMP-2").labels_for("tags: [a, b , c d] description: x") == ("a", "b", "c d")
    assert get_task("LaMP-2").labels_for("description: no tag list") == tasks.MOVIE_TAGS
    assert len(get_task("LaMP-2").labels_for(TAGGING_INPUT)) == 15
    assert get_task("LaMP-1").labels_for(CITATION_INPUT) == ("[1]", "[2]")
    assert get_task("LaMP-3").labels_for(RATING_INPUT) == ("1", "2", "3", "4", "5")
    assert get_task("LaMP-4").labels_for("anything") == ()
