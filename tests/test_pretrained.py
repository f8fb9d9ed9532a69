"""No model, tokenizer or encoder folder runs its own Python: not through a selector file, a saved
program, an option, nor a ``y`` typed (or piped) at transformers' prompt."""

from __future__ import annotations

import ast
import io
import json
import sys
from pathlib import Path

import pytest

from persona_rag.errors import DataError
from persona_rag.pretrained import load_pretrained, refuse_custom_code

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def evil_folder(tmp_path, monkeypatch):
    """A model folder whose config asks transformers to import ``evil_cfg``, whose import writes a
    marker file; the folder is also on ``sys.path``, as a downloaded folder next to a script is."""
    folder = tmp_path / "evil-model"
    folder.mkdir()
    marker = tmp_path / "pwned"
    (folder / "config.json").write_text(json.dumps({"auto_map": {"AutoConfig": "evil_cfg.EvilConfig"}}))
    (folder / "evil_cfg.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass EvilConfig: ...\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 10))  # an answer ready for any prompt
    yield folder, marker
    sys.modules.pop("evil_cfg", None)


def test_a_folder_that_asks_for_its_own_code_is_refused_naming_the_file(evil_folder):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder, marker = evil_folder
    for loader in (AutoConfig, AutoModel, AutoTokenizer):
        with pytest.raises(DataError, match=rf"{folder / 'config.json'}: .*own Python code") as caught:
            load_pretrained(loader, str(folder))
        assert "\n" not in str(caught.value)
    assert not marker.exists() and "evil_cfg" not in sys.modules


def test_a_tokenizer_config_with_an_auto_map_is_refused_too(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    custom_tokenizer = {"auto_map": {"AutoTokenizer": ["x.T", None]}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(custom_tokenizer))
    with pytest.raises(DataError, match=r"tokenizer_config\.json"):
        refuse_custom_code(str(tmp_path))


def test_every_load_tells_transformers_not_to_run_model_code(tmp_path):
    calls = []

    class Recorder:
        @classmethod
        def from_pretrained(cls, name, **kwargs):
            calls.append({"name": name, **kwargs})
            return cls()

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    load_pretrained(Recorder, str(tmp_path), dtype="float32")
    assert calls == [{"name": str(tmp_path), "trust_remote_code": False, "dtype": "float32"}]


def test_no_module_calls_from_pretrained_but_the_helper():
    """One helper for ``trust_remote_code=False``, so that no call site can forget it."""
    helper = ROOT / "persona_rag" / "pretrained.py"
    calls = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in ("persona_rag", "optimizers")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != helper
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "from_pretrained"
    ]
    assert calls == []


def test_the_encoder_the_selector_and_the_reader_refuse_it(evil_folder):
    from persona_rag.encoders import TextEncoder
    from persona_rag.lm import LocalLM
    from persona_rag.selector import SelectorNet

    folder, marker = evil_folder
    for build in (TextEncoder, SelectorNet, LocalLM):
        with pytest.raises(DataError, match=r"config\.json"):
            build(str(folder))
    assert not marker.exists()


def test_a_selector_file_naming_such_a_folder_is_one_line_even_with_y_on_stdin(
    evil_folder, tmp_path, write_split, rating_question, capsys
):
    from persona_rag.cli import main

    folder, marker = evil_folder
    data = tmp_path / "data"
    write_split(data, "dev", [rating_question("q1", "fine", [{"id": "p1", "text": "ok", "score": "3"}])])
    selector = tmp_path / "sel.json"
    pool = {"none": {"retriever": "none"}, "recency": {"retriever": "recency"}}
    selector.write_text(json.dumps({"pool": pool, "mode": "pre", "model": str(folder)}))
    assert main(["evaluate", "--data", str(data), "--selector", str(selector)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(folder / "config.json") in error
    assert not marker.exists() and "evil_cfg" not in sys.modules


def test_a_saved_program_naming_such_a_folder_is_refused(evil_folder, tmp_path):
    from persona_rag import BM25Retriever, Generator, PersonalizedRAG
    from persona_rag.errors import StateError
    from persona_rag.lm.registry import model_fingerprint

    folder, marker = evil_folder
    program = PersonalizedRAG(task="LaMP-3", retriever=BM25Retriever(), generator=Generator())
    program.save(str(tmp_path / "program.json"))
    state = json.loads((tmp_path / "program.json").read_text())
    state["generator.predict"]["persona_rag_lm"] = {  # a forger can compute the right fingerprint
        "kind": "local", "model": str(folder), "fingerprint": model_fingerprint(str(folder)),
    }  # fmt: skip
    (tmp_path / "program.json").write_text(json.dumps(state))
    with pytest.raises(StateError, match=r"program\.json: .*config\.json: .*own Python code"):
        PersonalizedRAG(task="LaMP-3").load(str(tmp_path / "program.json"))
    assert not marker.exists()
