"""Reader fine-tuning: a new program pointing at an atomic Hugging Face checkpoint."""

from __future__ import annotations

import gc
import weakref

import pytest

from optimizers import ReaderFinetune, ReaderFinetuneConfig
from optimizers.reader import answer_loss
from persona_rag import BM25Retriever, Generator, NoRetriever, PersonalizedRAG, load_lamp
from persona_rag.errors import ConfigError
from persona_rag.lm import LocalEngine, LocalLM, local_lm
from persona_rag.lm import registry as lm_registry


@pytest.mark.slow
def test_compile_returns_a_new_program_with_the_tuned_reader(sample_task, tmp_path, monkeypatch):
    monkeypatch.setattr(lm_registry, "_SHARED", {})  # this test's models only
    train = load_lamp(sample_task, "train").examples()
    dev = load_lamp(sample_task, "dev").examples()
    student = PersonalizedRAG(
        task="LaMP-3", retriever=BM25Retriever(), generator=Generator(lm=local_lm()), k=2
    )
    base_weights = weakref.ref(student.generator.local_model.model)  # loaded, as after an evaluation
    copies = []
    wrap = LocalLM.wrap.__func__
    monkeypatch.setattr(LocalLM, "wrap", classmethod(lambda cls, model, *a, **k: copies.append(
        weakref.ref(model)) or wrap(cls, model, *a, **k)))  # fmt: skip
    config = ReaderFinetuneConfig(
        output_dir=tmp_path / "reader",
        max_examples=8,
        max_val_examples=4,
        epochs=1,
        batch_size=4,
        max_length=96,
        learning_rate=1e-4,
        progress=False,
    )
    optimizer = ReaderFinetune(config=config, retrievers=[BM25Retriever(), NoRetriever()])
    tuned = optimizer.compile(student, trainset=train, valset=dev)

    # Memory: neither the base nor the trained copy (with its gradients and Adam's moments) stays
    # loaded beside the fine-tuned reader (the demo peaked at 4.8 GB with both held).
    gc.collect()
    assert base_weights() is None and len(copies) == 1 and copies[0]() is None
    assert lm_registry._SHARED == {}
    best = tmp_path / "reader" / "best"
    assert (best / "config.json").exists() and (best / "model.safetensors").exists()
    assert not list((tmp_path / "reader").glob(".*tmp"))  # no half-written checkpoint left
    assert tuned is not student and tuned._compiled
    assert tuned.generator.predict.lm.engine.model == str(best)
    assert student.generator.predict.lm.engine.model == "SmolLM2-135M-Instruct"  # the input is untouched
    history = optimizer.result.history
    assert [row["epoch"] for row in history] == [0, 1]
    assert {"score", "MAE", "RMSE", "train_loss"} <= set(history[1])
    assert (tmp_path / "reader" / "curves.png").exists()

    prediction = tuned(input=dev[0].input, profile=dev[0].profile)
    assert prediction.output in {"1", "2", "3", "4", "5"}
    assert list(lm_registry._SHARED) == [(str(best), "float32")]  # one model in the process: the tuned reader

    tuned.save(str(tmp_path / "program.json"))
    fresh = PersonalizedRAG(task="LaMP-3", retriever=BM25Retriever(), k=2)
    fresh.load(str(tmp_path / "program.json"))
    engine = fresh.generator.predict.lm.engine
    assert isinstance(engine, LocalEngine) and engine.model == str(best)
    assert fresh(input=dev[0].input, profile=dev[0].profile).output == prediction.output


def test_server_models_are_refused_with_a_pointer(scripted_lm, sample_task, tmp_path):
    train = load_lamp(sample_task, "train").examples()
    student = PersonalizedRAG(task="LaMP-3", generator=Generator(lm=scripted_lm("3")))
    optimizer = ReaderFinetune(config=ReaderFinetuneConfig(output_dir=tmp_path))
    with pytest.raises(ValueError, match="BootstrapFinetune"):
        optimizer.compile(student, trainset=train, valset=train)


class WordTokenizer:
    """One id per word: enough to count what the reader trains on."""

    eos_token_id = 0

    def encode(self, text, add_special_tokens=False):
        return [len(word) for word in text.split()]


class StubReader:
    tokenizer = WordTokenizer()

    def render(self, messages):
        return "<chat> " + " ".join(m["content"] for m in messages)


def test_training_prompts_are_what_inference_reads(scripted_lm, caplog):
    # Inference budgets max_input_tokens (512) for the prompt; training used to cut every
    # sequence to 256 tokens from the left, dropping the chat template and the first items.
    program = PersonalizedRAG(task="LaMP-3", generator=Generator(lm=scripted_lm("3")))
    prompt = " ".join(f"w{i}" for i in range(400))
    optimizer = ReaderFinetune(config=ReaderFinetuneConfig())
    assert optimizer.config.max_length is None
    prompt_ids, answer_ids = optimizer._encode(StubReader(), program, prompt, "4")
    rendered = StubReader().render(program.generator.messages(prompt))
    assert prompt_ids == WordTokenizer().encode(rendered) and len(prompt_ids) > 400
    assert answer_ids == [1, 0]
    assert optimizer._fit([(prompt_ids, answer_ids)], 512) == [(prompt_ids, answer_ids)]

    capped = ReaderFinetune(config=ReaderFinetuneConfig(max_length=100))
    with caplog.at_level("WARNING"):
        [(cut, answer)] = capped._fit([(prompt_ids, answer_ids)], 512)
    assert len(cut) + len(answer) == 100 and cut == prompt_ids[-98:]
    assert "1 of 1 training sequences exceed max_length=100" in caplog.text


def test_answer_loss_is_the_masked_labels_loss_with_logits_for_the_answers_only():
    """The reader's loss equals the model's own loss with the prompts masked out, while the LM head
    (49k outputs for SmolLM2) runs on the answer tokens only, not on every position."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    batch = [([5, 6, 7, 8, 9], [10, 0]), ([11, 12], [13, 14, 0])]
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 0], [11, 12, 13, 14, 0, 1, 1]])
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    labels = torch.tensor([[-100] * 5 + [10, 0], [-100, -100, 13, 14, 0, -100, -100]])
    expected = model(input_ids=ids, attention_mask=mask, labels=labels).loss

    head_inputs = []
    model.lm_head.register_forward_hook(lambda module, args, out: head_inputs.append(tuple(args[0].shape)))
    loss = answer_loss(model, batch, pad=1)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert head_inputs == [(5, 16)]  # the 5 answer tokens, not 2 rows x 7 positions
    loss.backward()
    assert model.model.embed_tokens.weight.grad is not None


def test_trainable_layers_freezes_the_embeddings_and_lower_layers():
    """Only the top layers and the final norm get gradients (and so Adam state); a count the model
    does not have is refused with its layer count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from optimizers.reader import _freeze_below

    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=4, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    _freeze_below(model, 1)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("model.layers.3.", "model.norm.")) for name in trainable)
    answer_loss(model, [([5, 6, 7], [8, 0])], pad=1).backward()
    assert model.model.embed_tokens.weight.grad is None
    assert model.model.layers[0].mlp.up_proj.weight.grad is None
    assert model.model.layers[3].mlp.up_proj.weight.grad is not None
    with pytest.raises(ConfigError, match="trainable_layers=5: the model has 4 decoder layers"):
        _freeze_below(LlamaForCausalLM(config), 5)
    assert torch.is_grad_enabled()


def test_a_reader_fine_tuned_for_another_task_is_refused_before_any_feedback(tiny_checkpoint, tmp_path):
    """A LaMP-3 reader answers with ratings: its feedback on a LaMP-6 question says nothing about
    the items, so every trainer that asks it (through Feedback) stops before any call or step."""
    import json

    from optimizers.feedback import Feedback
    from optimizers.reader import TRAINING_RECORD

    reader = tiny_checkpoint(tmp_path / "reader", seed=3)
    (reader / TRAINING_RECORD).write_text(json.dumps({"task": "LaMP-3", "train_ids": [], "val_ids": []}))
    generator = Generator(lm=local_lm(str(reader)))
    with pytest.raises(ConfigError, match=r"fine-tuned for LaMP-3, not LaMP-6.*persona-rag finetune"):
        Feedback(program=PersonalizedRAG(task="LaMP-6", retriever=BM25Retriever(), generator=generator))
    same = Feedback(
        program=PersonalizedRAG(task="LaMP_3", retriever=BM25Retriever(), generator=generator),
        cache=tmp_path / "f.sqlite",
    )
    assert same.program.task.name == "LaMP-3"


@pytest.mark.parametrize("bad", [{"k": 0}, {"max_length": 0}, {"trainable_layers": 0}, {"epochs": 0}])
def test_reader_settings_are_checked_at_construction(bad):
    [name] = bad
    with pytest.raises(ConfigError, match=f"^ReaderFinetuneConfig: {name}="):
        ReaderFinetuneConfig(**bad)


def test_reader_compile_refuses_what_it_does_not_use():
    with pytest.raises(ConfigError, match=r"ReaderFinetune.compile\(\) does not use num_threads="):
        ReaderFinetune().compile(PersonalizedRAG(task="LaMP-3"), trainset=[], valset=[], num_threads=4)
