"""A linear regression small enough to train in a test, and a Trainer on it, for the training tests."""

from __future__ import annotations

import torch

from optimizers.training import Trainer, TrainingConfig


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
