"""optimizers.training.loop: convergence, history and curves, early stopping, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from tests.optimizers.training.problem import make_problem, trainer_for


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
