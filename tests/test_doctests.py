"""The ``>>>`` examples in the packages' docstrings run, so they cannot drift from the code.

An example that would load or train a model is written as a plain code block instead, since a
doctest run of it would take minutes; every ``>>>`` example left must run here, in a fresh
folder (the Trainer's example writes ``runs/x``).
"""

from __future__ import annotations

import doctest
import importlib

import pytest

from tests.conftest import REPO_ROOT


def modules_with_examples() -> list[str]:
    found = []
    for package in ("persona_rag", "optimizers"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if ">>> " in path.read_text(encoding="utf-8"):
                found.append(".".join(path.relative_to(REPO_ROOT).with_suffix("").parts))
    return found


def test_the_packages_have_examples_to_run():
    assert len(modules_with_examples()) >= 4


@pytest.mark.parametrize("module", modules_with_examples())
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS, verbose=False)
    assert results.attempted > 0
    assert results.failed == 0
