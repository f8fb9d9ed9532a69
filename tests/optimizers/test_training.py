"""The shared training loop: convergence, early stopping, atomic best weights, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from optimizers.training import Trainer, TrainingConfig, refuse_unused_compile_arguments
from persona_rag.errors import ConfigError, StateError


def make_problem(seed: int = 0):
    torch.manual_seed(seed)
    true = torch.tensor([2.0, -3.0])
    x = torch.randn(64, 2)
    items = [(x[i], float(x[i] @ true)) for i in range(64)]
    return items, torch.nn.Linear(2, 1, bias=False)


def loss_of(model):
    def loss_fn(batch):
        x = torch.stack([item[0] for item in batch])
        y = torch.tensor([item[1] for item in batch])
        loss = torch.nn.functional.mse_loss(model(x).squeeze(-1), y)
        return loss, {"batch_size": float(len(batch))}

    return loss_fn


def validation_of(model, items):
    def validate():
        with torch.no_grad():
            loss = float(loss_of(model)(items)[0])
        return {"score": -loss, "mse": loss}

    return validate


def trainer_for(model, items, tmp_path, **overrides):
    options = dict(
        output_dir=tmp_path,
        learning_rate=0.3,
        epochs=6,
        batch_size=8,
        gradient_accumulation_steps=2,
        checkpoint_every=1,
        patience=None,
        progress=False,
    )
    options.update(overrides)
    saved = []

    def save_best(directory):
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), directory / "weights.pt")
        saved.append(directory)

    config = TrainingConfig(**options)
    return Trainer(module=model, config=config, loss_fn=loss_of(model), validate=validation_of(model, items),
                   save_best=save_best), saved  # fmt: skip


def test_trains_and_records_history_and_curves(tmp_path):
    items, model = make_problem()
    trainer, _ = trainer_for(model, items, tmp_path)
    result = trainer.fit(items)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(7))  # epoch 0 = before training
    assert history[-1]["mse"] < 0.1 * history[0]["mse"]
    assert "train_loss" in history[1] and history[1]["train_batch_size"] == 8.0
    assert result.best_dir == tmp_path / "best" and (tmp_path / "best" / "weights.pt").exists()
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    # 64 items / 8 per micro-batch / 2 per step = 4 optimizer steps per epoch.
    assert history[-1]["step"] == 24


def test_resume_state_is_written_without_a_copy_in_memory(tmp_path):
    """The resume state (weights and two Adam moments) used to be serialised into a buffer and
    copied out of it: at the reader's fine-tune that was 1.5 GB more peak memory than training
    itself. Streamed to the file, Python holds next to none of it."""
    import tracemalloc

    items, _ = make_problem()
    model = torch.nn.Linear(2048, 1024, bias=False)  # 8 MiB of weights: a 24 MiB state with Adam's
    trainer, _ = trainer_for(model, items, tmp_path)
    trainer._run = {"test": True}
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 2048)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    state_bytes = 3 * model.weight.numel() * 4
    tracemalloc.start()
    try:
        trainer._save_state(optimizer, scheduler, {"epoch": 1})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "state" / "trainer.pt").stat().st_size > state_bytes
    assert peak < state_bytes / 4, (
        f"{peak / 2**20:.1f} MiB held while writing a {state_bytes / 2**20:.0f} MiB state"
    )


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    items, model = make_problem()
    trainer, _ = trainer_for(model, items, tmp_path, learning_rate=50.0, patience=1, epochs=10)  # diverges
    result = trainer.fit(items)
    assert len(result.history) < 11
    assert result.best_epoch == max(range(len(result.history)), key=lambda i: result.history[i]["score"])


def test_interrupted_run_resumes_without_repeating_steps(tmp_path):
    items, reference_model = make_problem()
    reference, _ = trainer_for(reference_model, items, tmp_path / "reference")
    reference.fit(items)

    _, model = make_problem()
    calls = {"n": 0}
    trainer, _ = trainer_for(model, items, tmp_path / "run")
    inner = trainer.loss_fn

    def crashing(batch):
        calls["n"] += 1
        if calls["n"] == 19:  # mid-epoch 3, after a checkpoint at step 9
            raise KeyboardInterrupt
        return inner(batch)

    trainer.loss_fn = crashing
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(items)

    _, fresh_model = make_problem()  # a new process would start from scratch weights
    resumed, _ = trainer_for(fresh_model, items, tmp_path / "run")
    counted = {"n": 0}
    inner_resumed = resumed.loss_fn

    def counting(batch):
        counted["n"] += 1
        return inner_resumed(batch)

    resumed.loss_fn = counting
    resumed.fit(items)
    assert counted["n"] == 6 * 8 - 18  # only the micro-batches after the last checkpoint
    assert torch.allclose(fresh_model.weight, reference_model.weight, atol=1e-6)


def test_a_different_run_in_the_same_folder_is_refused_until_overwrite(tmp_path):
    items, model = make_problem()
    trainer_for(model, items, tmp_path, epochs=2)[0].fit(items)
    for overrides, differs in (
        ({"learning_rate": 0.1}, "config.learning_rate"),
        ({"output_dir": tmp_path, "progress": True}, None),  # run-only fields: the same run, resumed
    ):
        _, other = make_problem()
        trainer, _ = trainer_for(other, items, tmp_path, epochs=2, **overrides)
        if differs:
            with pytest.raises(
                StateError, match=rf"state/trainer\.json: .*differs in {differs}.*--overwrite"
            ):
                trainer.fit(items)
        else:
            trainer.loss_fn = None  # nothing left to train: a loss call would fail
            assert len(trainer.fit(items).history) == 3
            # A finished run keeps its progress, not the weights and Adam moments nothing will read.
            assert not (tmp_path / "state" / "trainer.pt").exists()
    _, other = make_problem()
    with pytest.raises(StateError, match="differs in data"):
        trainer_for(other, items[:32], tmp_path, epochs=2)[0].fit(items[:32])
    trainer, _ = trainer_for(other, items, tmp_path, epochs=2)
    trainer.base = "another base model"
    with pytest.raises(StateError, match="differs in base"):
        trainer.fit(items)

    fresh, _ = trainer_for(other, items, tmp_path, epochs=2, learning_rate=0.1, resume=False)
    result = fresh.fit(items)  # --overwrite: starts again and replaces the state
    assert [row["epoch"] for row in result.history] == [0, 1, 2]
    state = json.loads((tmp_path / "state" / "trainer.json").read_text())
    assert state["run"]["config"]["learning_rate"] == 0.1


class Payload:
    """Unpickling this runs ``Path.write_text(marker, "ran")``: a stand-in for ``os.system``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "ran"))


@pytest.mark.parametrize("layout", ["pickle alone (old layout)", "pickle beside a valid trainer.json"])
def test_a_crafted_pickle_is_never_unpickled_on_resume(tmp_path, layout):
    proof = tmp_path / "proof"
    function, arguments = Payload(proof).__reduce__()  # what unpickling the payload would call
    function(*arguments)
    assert proof.exists()  # the payload is live: unpickling it would run code

    items, model = make_problem()
    out = tmp_path / "run"
    trainer_for(model, items, out, epochs=1)[0].fit(items)
    if layout.startswith("pickle alone"):
        (out / "state" / "trainer.json").unlink()
    marker = tmp_path / "pwned"
    torch.save({"model": Payload(marker)}, out / "state" / "trainer.pt")
    _, fresh = make_problem()
    with pytest.raises(StateError, match=r"state/trainer\.(pt|json): .*never (loaded|unpickled)"):
        trainer_for(fresh, items, out, epochs=1)[0].fit(items)
    assert not marker.exists()


def test_validation_scores_survive_a_failed_llm_call_as_evaluation_does(scripted_lm):
    """Validation is evaluation's run: a failed call scores its example as an empty answer (as
    ``evaluate_program`` does) instead of ending the training run."""
    import dspy

    from optimizers.training import validation_scores
    from persona_rag import BM25Retriever, Generator, PersonalizedRAG
    from persona_rag.evaluation import evaluate_program

    def flaky(messages):
        if "horror" in messages[-1]["content"]:
            raise ConnectionError("connection reset")
        return "3"

    profile = [{"id": "a", "text": "a western in the snow", "score": "1"}]
    question = "What is the score of the following review on a scale of 1 to 5? review: {}"
    valset = [
        dspy.Example(id=i, input=question.format(text), profile=profile, output=gold).with_inputs(
            "input", "profile"
        )
        for i, (text, gold) in enumerate([("a slow western", "3"), ("a horror remake", "2")])
    ]
    program = PersonalizedRAG(
        task="LaMP-3", retriever=BM25Retriever(), generator=Generator(lm=scripted_lm(flaky)), k=1
    )
    scores = validation_scores(program, valset)
    evaluated = evaluate_program(program, valset, progress=False)
    assert evaluated.failed == ["1"]
    assert scores == {"score": pytest.approx((1.0 + 0.0) / 2), **evaluated.metrics}


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"learning_rate": -1e-5},
        {"learning_rate": 0.0},
        {"batch_size": 0},
        {"gradient_accumulation_steps": 0},
        {"warmup_ratio": 1.5},
        {"max_grad_norm": 0.0},
        {"weight_decay": -0.1},
        {"patience": -1},
        {"checkpoint_every": 0},
    ],
)
def test_a_setting_that_cannot_train_is_refused_at_construction_naming_the_field(bad):
    [(name, value)] = bad.items()
    with pytest.raises(ConfigError, match=f"^TrainingConfig: {name}={value!r}; expected"):
        TrainingConfig(**bad)


def test_unused_compile_arguments_are_named():
    refuse_unused_compile_arguments(object(), None, {})  # nothing to refuse
    with pytest.raises(ConfigError, match=r"^object.compile\(\) does not use max_rounds=, teacher=$"):
        refuse_unused_compile_arguments(object(), "a teacher program", {"max_rounds": 2})
