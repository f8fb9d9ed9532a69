"""Pydantic records of the LaMP file format (questions, profile items, golds)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Gold", "OutputsFile", "ProfileItem", "Question"]


class ProfileItem(BaseModel):
    """One past document of a user. Task fields (``title``, ``score``...) are kept as extras."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    id: str = Field(min_length=1)
    date: str | None = None


class Question(BaseModel):
    """One LaMP question: the task input and the user's profile."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    id: str = Field(min_length=1)
    input: str
    profile: list[ProfileItem]
    user_id: str | None = None


class Gold(BaseModel):
    """The expected output of one question."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    id: str = Field(min_length=1)
    output: str


class OutputsFile(BaseModel):
    """``{split}_outputs.json``: the task name and the golds."""

    task: str
    golds: list[Gold]
