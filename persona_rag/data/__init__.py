"""LaMP data: files <-> pydantic records <-> ``dspy.Example``; download; the sample-task maker."""

from persona_rag.data.download import LAMP_BASE_URL, download_lamp, lamp_urls
from persona_rag.data.lamp import SPLITS, LampSplit, load_lamp, read_questions
from persona_rag.data.records import Gold, OutputsFile, ProfileItem, Question
from persona_rag.data.sample import make_sample_task

__all__ = [
    "LAMP_BASE_URL",
    "SPLITS",
    "Gold",
    "LampSplit",
    "OutputsFile",
    "ProfileItem",
    "Question",
    "download_lamp",
    "lamp_urls",
    "load_lamp",
    "make_sample_task",
    "read_questions",
]
