"""Errors name where the problem is and keep the standard exception types callers catch."""

from __future__ import annotations

from persona_rag.errors import DataError, DownloadError, PersonaRAGError, UnknownTaskError


def test_data_error_prefixes_the_file_once():
    error = DataError("bad field", file="/d/dev_questions.json", item_id="q1", field="input")
    assert str(error) == "/d/dev_questions.json: bad field"
    assert (error.file, error.item_id, error.field) == ("/d/dev_questions.json", "q1", "input")
    assert str(DataError("/d/x.json: already located", file="/d/x.json")) == "/d/x.json: already located"


def test_data_error_in_file_keeps_the_location():
    located = DataError("question 'q1': missing", item_id="p1", field="score").in_file("/d/f.json")
    assert str(located) == "/d/f.json: question 'q1': missing"
    assert (located.file, located.item_id, located.field) == ("/d/f.json", "p1", "score")


def test_error_hierarchy():
    assert isinstance(DataError("x"), ValueError) and isinstance(DataError("x"), PersonaRAGError)
    assert isinstance(DownloadError("x"), OSError)
    unknown = UnknownTaskError("unknown task 'x'")
    assert isinstance(unknown, KeyError) and str(unknown) == "unknown task 'x'"
