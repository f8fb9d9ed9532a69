"""The LaMP tasks (LaMP-1 to LaMP-7, and LaMP-2N of the first release), registered on import."""

from __future__ import annotations

import re

from persona_rag.tasks.registry import register_task
from persona_rag.tasks.spec import TaskSpec
from persona_rag.tasks.truncation import ENTRY_SEPARATOR

__all__ = ["LAMP_TASKS", "MOVIE_TAGS", "NEWS_CATEGORIES"]


def _citation_query(input: str) -> str:
    titles = re.findall(r'\[\d\]:\s*"(.*?)"', input)
    return " ".join(titles) if titles else input


def _after_title(input: str, entries: str) -> str:
    position = input.find("title")
    if position < 0:
        return f"{entries}. {input}"
    cut = position + len("title")
    return f"{input[:cut]}{ENTRY_SEPARATOR}{entries}{input[cut:]}"


MOVIE_TAGS = (
    "sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia", "dark comedy", "classic",
    "psychology", "fantasy", "romance", "thought-provoking", "social commentary", "violence", "true story",
)  # fmt: skip
NEWS_CATEGORIES = (
    "travel", "education", "parents", "style & beauty", "entertainment", "food & drink",
    "science & technology",
    "business", "sports", "healthy living", "women", "politics", "crime", "culture & arts", "religion",
)  # fmt: skip

LAMP_TASKS = (
    TaskSpec(
        name="LaMP-1", aliases=("LaMP_1", "citation"), kind="classification",
        description="personalized citation identification",
        profile_fields=("title", "abstract"), document_template="{title} {abstract}",
        entry_template='"{title}"', truncate_field="title", combine=_after_title,
        query_fn=_citation_query, labels=("[1]", "[2]"),
    ),
    TaskSpec(
        name="LaMP-2", aliases=("LaMP_2", "LaMP-2M", "movie-tagging"), kind="classification",
        description="personalized movie tagging",
        profile_fields=("description", "tag"), document_template="{description}",
        entry_template='the tag for the movie: "{description}" is "{tag}"', truncate_field="description",
        query_marker="description:", labels=MOVIE_TAGS, labels_pattern=r"tags:\s*\[(.*?)\]",
    ),
    TaskSpec(
        name="LaMP-2N", aliases=("LaMP_2N", "news-categorization"), kind="classification",
        description="personalized news categorization (first LaMP release)",
        profile_fields=("text", "category"), document_template="{text}",
        entry_template='the category for the article: "{text}" is "{category}"', truncate_field="text",
        query_marker="article:", labels=NEWS_CATEGORIES, labels_pattern=r"categories:\s*\[(.*?)\]",
    ),
    TaskSpec(
        name="LaMP-3", aliases=("LaMP_3", "product-rating"), kind="rating",
        description="personalized product rating",
        profile_fields=("text", "score"), document_template="{text}",
        entry_template='{score} is the score for "{text}"', truncate_field="text", query_marker="review:",
        rating_field="score",
    ),
    TaskSpec(
        name="LaMP-4", aliases=("LaMP_4", "news-headline"), kind="generation",
        description="personalized news headline generation",
        profile_fields=("title", "text"), document_template="{title} {text}",
        entry_template='"{title}" is the title for "{text}"', truncate_field="text", query_marker="article:",
    ),
    TaskSpec(
        name="LaMP-5", aliases=("LaMP_5", "scholarly-title"), kind="generation",
        description="personalized scholarly title generation",
        profile_fields=("title", "abstract"), document_template="{title} {abstract}",
        entry_template='"{title}" is the title for "{abstract}"', truncate_field="abstract",
        combine="{entries}. Following the given patterns {input}", query_marker="paper:",
    ),
    TaskSpec(
        name="LaMP-6", aliases=("LaMP_6", "email-subject"), kind="generation",
        description="personalized email subject generation",
        profile_fields=("title", "text"), document_template="{title} {text}",
        entry_template='"{title}" is the title for "{text}"', truncate_field="text",
    ),
    TaskSpec(
        name="LaMP-7", aliases=("LaMP_7", "tweet-paraphrasing"), kind="generation",
        description="personalized tweet paraphrasing",
        profile_fields=("text",), document_template="{text}", entry_template='"{text}"',
        truncate_field="text",
        combine="{entries} are written by a person. Following the given patterns {input}",
    ),
)  # fmt: skip

for _spec in LAMP_TASKS:
    register_task(_spec)
