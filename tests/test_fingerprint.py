"""Content fingerprints: checkpoints in folders of the same name never share cached answers."""

from __future__ import annotations

import hashlib
import json

import dspy
import pytest

from persona_rag import GenerationError, Generator, fingerprint
from persona_rag.fingerprint import directory_fingerprint, file_digest, public_settings
from persona_rag.lm import LocalLM, local_lm, model_fingerprint

PROMPTS = ("Tell me about films.", "What is a good book?", "Rate this review: fine.")


def test_file_digest_follows_the_content_not_the_name(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_RAG_CACHE", str(tmp_path / "cache"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "w.bin").write_bytes(b"one")
    (tmp_path / "b" / "w.bin").write_bytes(b"two")
    assert directory_fingerprint(tmp_path / "a") != directory_fingerprint(tmp_path / "b")
    before = directory_fingerprint(tmp_path / "a")
    (tmp_path / "a" / "w.bin").write_bytes(b"thr")  # same size, rewritten in place
    assert directory_fingerprint(tmp_path / "a") != before
    (tmp_path / "b" / "w.bin").write_bytes(b"thr")
    assert directory_fingerprint(tmp_path / "a") == directory_fingerprint(tmp_path / "b")
    assert file_digest(tmp_path / "a" / "w.bin") == hashlib.sha256(b"thr").hexdigest()
    assert not (tmp_path / "cache" / "fingerprints.json").exists()  # files this fresh are never remembered


def test_settled_file_digests_are_remembered_for_the_next_process(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_RAG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fingerprint, "_RACY_SECONDS", -1.0)  # as if written long ago
    (tmp_path / "w.bin").write_bytes(b"one")
    digest = file_digest(tmp_path / "w.bin")
    stored = json.loads((tmp_path / "cache" / "fingerprints.json").read_text())
    assert [(key.split("|")[0], value) for key, value in stored.items()] == [
        (str((tmp_path / "w.bin").resolve()), digest)
    ]


def test_public_settings_take_every_plain_attribute():
    class Settings:
        def __init__(self):
            self.max_new_tokens, self.stop, self.batch_size = 8, ("\n",), 4
            self._cache, self.model, self.history = {}, object(), []  # state, not settings

    assert public_settings(Settings(), exclude=frozenset({"batch_size"})) == {
        "max_new_tokens": 8,
        "stop": ("\n",),
    }


def _evaluate(path):
    """The answers to PROMPTS of a free-generating Generator over ``path``, through dspy.Evaluate."""
    generator = Generator(lm=local_lm(str(path), max_tokens=6), label_scoring=False, max_new_tokens=6)
    outputs = {}

    def metric(example, prediction, trace=None):
        outputs[example.prompt] = prediction.output
        return 1.0

    devset = [dspy.Example(prompt=p).with_inputs("prompt") for p in PROMPTS]
    dspy.Evaluate(devset=devset, metric=metric, num_threads=1, display_progress=False)(generator)
    return outputs


def _truth(path):
    """The same answers straight from the weights at ``path`` (no cache anywhere)."""
    generator = Generator(label_scoring=False)
    model = LocalLM(str(path))
    answers = model.generate([generator.messages(p) for p in PROMPTS], max_new_tokens=6)
    return {p: a.text for p, a in zip(PROMPTS, answers)}


def test_checkpoints_in_folders_of_the_same_name_answer_for_themselves(tmp_path, tiny_checkpoint):
    a = tiny_checkpoint(tmp_path / "a" / "best", seed=1)
    b = tiny_checkpoint(tmp_path / "b" / "best", seed=2)
    assert _truth(a) != _truth(b)  # the two random models do answer differently
    assert _evaluate(a) == _truth(a)  # fills DSPy's response cache for a
    assert _evaluate(b) == _truth(b)  # was a's cached answers when the key was "local/best"

    stale = Generator(lm=local_lm(str(a), max_tokens=6), label_scoring=False, max_new_tokens=6)
    tiny_checkpoint(a, seed=2)  # retrained in place: a now holds b's weights
    assert model_fingerprint(str(a)) == model_fingerprint(str(b))
    assert _evaluate(a) == _truth(b)
    with pytest.raises(GenerationError, match="changed since this LM was built"):
        stale(prompt="A prompt never asked before.")  # never answers new weights under the old key
