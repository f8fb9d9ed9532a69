"""Reader fine-tuning: a new program pointing at an atomic Hugging Face checkpoint."""

from __future__ import annotations

import pytest

from optimizers import ReaderFinetune, ReaderFinetuneConfig
from persona_rag import BM25Retriever, Generator, NoRetriever, PersonalizedRAG, load_lamp
from persona_rag.lm import LocalEngine, local_lm


@pytest.mark.slow
def test_compile_returns_a_new_program_with_the_tuned_reader(sample_task, tmp_path):
    train = load_lamp(sample_task, "train").examples()
    dev = load_lamp(sample_task, "dev").examples()
    student = PersonalizedRAG(
        task="LaMP-3", retriever=BM25Retriever(), generator=Generator(lm=local_lm()), k=2
    )
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
