"""Errors name where the problem is and keep the standard exception types callers catch."""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from persona_rag.errors import (
    ConfigError,
    DataError,
    DownloadError,
    PersonaRAGError,
    ProgramError,
    UnknownTaskError,
    require_at_least,
    require_fraction,
    require_one_of,
    require_positive,
)
from tests.conftest import REPO_ROOT


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


def test_a_program_without_the_part_to_train_is_a_type_error_and_ours():
    error = ProgramError("RSPG trains a selector")
    assert isinstance(error, TypeError) and isinstance(error, PersonaRAGError)


@dataclass
class Settings:
    epochs: int = 1
    learning_rate: float = 1e-5
    patience: int | None = None
    warmup_ratio: float = 0.05
    signal: str = "metric"


@pytest.mark.parametrize(
    ("bad", "check"),
    [
        ({"epochs": 0}, lambda s: require_at_least(s, 1, "epochs")),
        ({"learning_rate": -1.0}, lambda s: require_positive(s, "learning_rate")),
        ({"learning_rate": math.inf}, lambda s: require_positive(s, "learning_rate")),
        ({"warmup_ratio": 1.0}, lambda s: require_fraction(s, "warmup_ratio")),
        ({"signal": "eval"}, lambda s: require_one_of(s, "signal", ("metric", "auto"))),
    ],
)
def test_config_checks_name_the_class_and_the_field(bad, check):
    [(name, value)] = bad.items()
    with pytest.raises(ConfigError, match=f"^Settings: {re.escape(f'{name}={value!r}')}; expected "):
        check(Settings(**bad))


def test_config_checks_let_good_and_unset_values_through():
    settings = Settings()
    require_at_least(settings, 0, "epochs", "patience")  # patience=None: unset
    require_positive(settings, "learning_rate")
    require_fraction(settings, "warmup_ratio")
    require_one_of(settings, "signal", ("metric",))


def bare_value_errors(path: Path) -> list[str]:
    """``raise ValueError(...)`` statements: a user-facing failure that the CLI would show as a
    traceback instead of one line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and isinstance(node.exc.func, ast.Name)
        and node.exc.func.id == "ValueError"
    ]


def test_the_packages_raise_their_own_errors_not_a_bare_value_error():
    paths = [*(REPO_ROOT / "persona_rag").rglob("*.py"), *(REPO_ROOT / "optimizers").rglob("*.py")]
    assert paths
    assert [found for path in paths for found in bare_value_errors(path)] == []
