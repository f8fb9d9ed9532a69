"""Loading a saved program never runs code from the file, nor sends requests where the file says."""

from __future__ import annotations

import json
import sys

import dspy
import pytest

from persona_rag import BM25Retriever, Generator, PersonalizedRAG
from persona_rag.errors import StateError
from persona_rag.lm import LocalEngine, local_lm

QUESTION = "What is the score of the following review? review: a fine film"
PROFILE = [{"id": "p1", "text": "loved it", "score": "5"}, {"id": "p2", "text": "dull", "score": "2"}]
ATTACKER = "http://attacker.invalid/v1"


def program_with(lm=None) -> PersonalizedRAG:
    return PersonalizedRAG(task="LaMP-3", retriever=BM25Retriever(), generator=Generator(lm=lm), k=1)


def saved(program: PersonalizedRAG, path) -> dict:
    program.save(str(path))
    return json.loads(path.read_text())


def test_a_local_checkpoint_program_loads_without_the_unsafe_flag(tmp_path, tiny_checkpoint):
    best = tiny_checkpoint(tmp_path / "reader" / "best", seed=1)
    program = program_with(local_lm(str(best)))
    state = saved(program, tmp_path / "program.json")
    record = state["generator.predict"]["persona_rag_lm"]
    assert state["generator.predict"]["lm"] is None  # nothing for DSPy's class importer
    assert record["kind"] == "local" and record["model"] == str(best) and len(record["fingerprint"]) == 64

    fresh = program_with()
    fresh.load(str(tmp_path / "program.json"))
    engine = fresh.generator.predict.lm.engine
    assert isinstance(engine, LocalEngine) and engine.model == str(best)
    assert fresh(input=QUESTION, profile=PROFILE).output == program(input=QUESTION, profile=PROFILE).output


def test_a_bfloat16_reader_is_saved_and_loaded_at_its_precision(tmp_path, tiny_checkpoint):
    best = tiny_checkpoint(tmp_path / "best", seed=1)
    program = program_with(local_lm(str(best), dtype="bfloat16"))
    record = saved(program, tmp_path / "program.json")["generator.predict"]["persona_rag_lm"]
    assert record["dtype"] == "bfloat16"
    assert (
        "dtype"
        not in saved(program_with(local_lm(str(best))), tmp_path / "f32.json")["generator.predict"][
            "persona_rag_lm"
        ]
    )  # float32 saves as before
    fresh = program_with()
    fresh.load(str(tmp_path / "program.json"))
    lm = fresh.generator.predict.lm
    assert lm.engine.dtype == "bfloat16" and lm.model.endswith(":bfloat16")
    assert fresh(input=QUESTION, profile=PROFILE).output == program(input=QUESTION, profile=PROFILE).output


def test_weights_changed_since_the_save_are_refused_unless_passed_explicitly(tmp_path, tiny_checkpoint):
    best = tiny_checkpoint(tmp_path / "best", seed=1)
    saved(program_with(local_lm(str(best))), tmp_path / "program.json")
    tiny_checkpoint(best, seed=2)  # retrained in place after the save
    with pytest.raises(StateError, match="changed since the program was saved"):
        program_with().load(str(tmp_path / "program.json"))
    explicit = program_with(local_lm(str(best)))
    explicit.load(str(tmp_path / "program.json"))
    assert explicit.generator.predict.lm.engine.model == str(best)


def test_programs_saved_by_older_versions_load_their_local_model_when_the_caller_passes_it(
    tmp_path, tiny_checkpoint
):
    best = tiny_checkpoint(tmp_path / "best", seed=1)
    state = saved(program_with(local_lm(str(best))), tmp_path / "program.json")
    predict = state["generator.predict"]
    del predict["persona_rag_lm"]
    predict["lm"] = {  # what dspy.Predict wrote for local_lm() before
        "_dspy_lm_class": "dspy.clients.lm.LM", "model": "local/best", "model_type": "chat", "max_tokens": 32,
        "temperature": 0.0, "engine": {"class": "persona_rag.lm:LocalEngine", "state": {"model": str(best)}},
    }  # fmt: skip
    (tmp_path / "program.json").write_text(json.dumps(state))
    with pytest.raises(StateError, match="without the fingerprint"):  # nothing vouches for the files
        program_with().load(str(tmp_path / "program.json"))
    fresh = program_with(local_lm(str(best)))
    fresh.load(str(tmp_path / "program.json"))
    assert fresh.generator.predict.lm.engine.model == str(best)


def test_a_local_record_without_its_fingerprint_is_refused_not_trusted(tmp_path, tiny_checkpoint):
    best = tiny_checkpoint(tmp_path / "best", seed=1)
    state = saved(program_with(local_lm(str(best))), tmp_path / "program.json")
    del state["generator.predict"]["persona_rag_lm"]["fingerprint"]
    (tmp_path / "program.json").write_text(json.dumps(state))
    fresh = program_with()
    with pytest.raises(StateError, match=r"program\.json: .*without the fingerprint.*local_lm"):
        fresh.load(str(tmp_path / "program.json"))
    assert fresh.generator.predict.lm is None


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """An importable module ``evilengine`` whose import writes a marker file."""
    marker = tmp_path / "pwned"
    (tmp_path / "evilengine.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "class Engine:\n"
        "    @classmethod\n"
        "    def load_state(cls, state):\n"
        "        return cls()\n"
        "    def complete(self, request):\n"
        "        raise RuntimeError\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("evilengine", None)


@pytest.mark.parametrize("unsafe_flag", [False, True])
@pytest.mark.parametrize("where", ["dspy lm entry", "persona-rag record"])
def test_a_tampered_engine_class_is_refused_and_never_imported(tmp_path, evil_module, where, unsafe_flag):
    state = saved(program_with(local_lm()), tmp_path / "program.json")
    predict = state["generator.predict"]
    if where == "dspy lm entry":
        del predict["persona_rag_lm"]
        predict["lm"] = {
            "_dspy_lm_class": "dspy.clients.lm.LM", "model": "local/x", "model_type": "chat",
            "engine": {"class": "evilengine:Engine", "state": {}},
        }  # fmt: skip
    else:
        predict["persona_rag_lm"] = {"kind": "custom", "model": "local/x", "class": "evilengine:Engine"}
    path = tmp_path / "program.json"
    path.write_text(json.dumps(state))
    fresh = program_with()
    with pytest.raises(StateError, match=r"program\.json: .*never chooses which code runs"):
        fresh.load(str(path), allow_unsafe_lm_state=unsafe_flag)  # even the old flag does not import it
    assert not evil_module.exists() and "evilengine" not in sys.modules
    assert fresh.generator.predict.lm is None  # the failed load changed nothing


def _tampered_endpoint(tmp_path) -> str:
    """A program saved with a server LM, whose record was edited to point at another host."""
    state = saved(program_with(dspy.LM("openai/gpt-4o-mini", api_key="sk-user-secret")), tmp_path / "p.json")
    state["generator.predict"]["persona_rag_lm"]["endpoint"] = {"api_base": ATTACKER}
    (tmp_path / "p.json").write_text(json.dumps(state))
    return str(tmp_path / "p.json")


def test_a_foreign_api_base_is_refused(tmp_path):
    path = _tampered_endpoint(tmp_path)
    mine = dspy.LM("openai/gpt-4o-mini", api_key="sk-user-secret")
    for fresh in (program_with(mine), program_with()):
        with pytest.raises(StateError, match=r"attacker\.invalid"):
            fresh.load(path)
        assert fresh.generator.predict.lm in (mine, None)  # the user's LM (and key) stay where they were
    with dspy.context(lm=mine), pytest.raises(StateError, match=r"attacker\.invalid"):
        program_with().load(path)


def test_the_saved_endpoint_is_used_when_the_caller_configures_it(tmp_path):
    path = _tampered_endpoint(tmp_path)
    chosen = dspy.LM("openai/gpt-4o-mini", api_base=ATTACKER, api_key="sk-for-that-host")
    fresh = program_with(chosen)
    fresh.load(path)
    assert fresh.generator.predict.lm is chosen


def test_a_saved_program_holds_no_api_key(tmp_path):
    lm = dspy.LM("openai/gpt-4o-mini", api_base="http://localhost:1/v1", api_key="sk-user-secret")
    text = json.dumps(saved(program_with(lm), tmp_path / "p.json"))
    assert "sk-user-secret" not in text and "http://localhost:1/v1" in text
