"""LaMP data: files <-> pydantic records <-> ``dspy.Example``; download; the sample-task maker."""

from persona_rag.data.download import LAMP_BASE_URL, download_lamp, lamp_urls
from persona_rag.data.lamp import SPLITS, LampSplit, load_lamp, read_questions
from persona_rag.data.records import Gold, OutputsFile, ProfileItem, Question
from persona_rag.data.sample import make_sample_task
from persona_rag.data.splits import Carved, carve_validation, check_disjoint

__all__ = [
    "LAMP_BASE_URL",
    "SPLITS",
    "Carved",
    "Gold",
    "LampSplit",
    "OutputsFile",
    "ProfileItem",
    "Question",
    "carve_validation",
    "check_disjoint",
    "download_lamp",
    "lamp_urls",
    "load_lamp",
    "make_sample_task",
    "read_questions",
]
