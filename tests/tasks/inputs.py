"""LaMP inputs and helpers the task tests share."""

from __future__ import annotations

import dataclasses

from persona_rag.tasks import ApproxTokenizer, TaskSpec, get_task

LAMP_NAMES = ["LaMP-1", "LaMP-2", "LaMP-2N", "LaMP-3", "LaMP-4", "LaMP-5", "LaMP-6", "LaMP-7"]
TOK = ApproxTokenizer()

CITATION_INPUT = (
    'For an author who has written the paper with the title "Deep Nets", which reference is related? '
    'Just answer with [1] or [2] without explanation. [1]: "Graph kernels" [2]: "Neural ranking models"'
)
TAGGING_INPUT = (
    "Which tag does this movie relate to among the following tags? Just answer with the tag name "
    "without further explanation. tags: [sci-fi, based on a book, comedy, action, twist ending, dystopia, "
    "dark comedy, classic, psychology, fantasy, romance, thought-provoking, social commentary, violence, "
    "true story] description: A robot falls in love."
)
RATING_INPUT = (
    "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
    "without further explanation. review: Great blender: works well"
)
MOVIELENS_RATING_INPUT = (
    "What is the score of the following movie on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
    "without further explanation. movie: Back to the Future Part III (1990), genres: Adventure, Western"
)


def words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def lenient(name: str) -> TaskSpec:
    """The task with the lenient reading of answers instead of LaMP's."""
    return dataclasses.replace(get_task(name), parsing="lenient")
