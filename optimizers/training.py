"""The training loop shared by persona-rag's optimizers.

Adam(W) with linear warm-up then linear decay, gradient clipping, gradient accumulation to an
effective batch, validation after every epoch with early stopping, the best weights written
atomically, and a resumable state: an interrupted run started again with the same output
directory continues where its last checkpoint left off, repeating no finished optimizer step.
Per-epoch losses and validation metrics go to ``history.json`` and ``curves.png``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dspy
import numpy as np
import torch

from persona_rag.io import atomic_write_bytes, atomic_write_json
from persona_rag.program import PersonalizedRAG

__all__ = ["Trainer", "TrainingConfig", "TrainingResult", "config_dict", "plot_history", "validation_scores"]

logger = logging.getLogger(__name__)

LossOutput = torch.Tensor | tuple[torch.Tensor, dict[str, float]]


@dataclass(kw_only=True)
class TrainingConfig:
    """Settings every trainer shares (the paper's defaults where it states them).

    Attributes:
        output_dir: where the best weights (``best/``), the resume state (``state/``),
            ``history.json`` and ``curves.png`` go.
        learning_rate: peak learning rate (paper: 1e-5).
        epochs: passes over the training set (paper: 10 for retrievers, 20 for selectors).
        batch_size: examples per forward pass.
        gradient_accumulation_steps: forward passes per optimizer step (paper: effective 64).
        warmup_ratio: share of optimizer steps with linear warm-up (paper: 5%).
        max_grad_norm: gradient clipping (paper: 1.0).
        weight_decay: AdamW weight decay (paper: none, i.e. Adam).
        patience: stop after this many epochs without a better validation score (``None``: never).
        checkpoint_every: optimizer steps between resume checkpoints (also saved every epoch).
        resume: continue from ``output_dir/state`` when it exists.
        seed: shuffling and initialisation seed.
        progress: show a progress bar.
    """

    output_dir: str | Path = "runs/train"
    learning_rate: float = 1e-5
    epochs: int = 10
    batch_size: int = 8
    gradient_accumulation_steps: int = 8
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    patience: int | None = 3
    checkpoint_every: int = 20
    resume: bool = True
    seed: int = 0
    progress: bool = True

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.gradient_accumulation_steps


@dataclass
class TrainingResult:
    """What a run produced: per-epoch history, where the best weights are, and its speed.

    Attributes:
        steps: optimizer steps taken by this call of ``fit`` (not those of a resumed earlier run).
        step_seconds: wall time of those steps (forward, backward, update; validation excluded),
            so ``steps / step_seconds`` is the training throughput a user can size a run with.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = 0
    best_dir: Path | None = None
    steps: int = 0
    step_seconds: float = 0.0


class Trainer:
    """Optimise ``module`` with ``loss_fn`` over items, validating with ``validate`` each epoch.

    Args:
        module: the torch module whose trainable parameters are optimised.
        config: the shared settings.
        loss_fn: ``loss_fn(batch_items) -> loss`` or ``(loss, {"reward": ...})``; extra values are
            averaged per epoch into the history.
        validate: ``validate() -> {"score": higher-is-better, ...}`` on the validation set.
        save_best: ``save_best(directory)`` writes the current weights in Hugging Face format.

    Example:
        >>> trainer = Trainer(module=model, config=TrainingConfig(output_dir="runs/x", epochs=2),
        ...                   loss_fn=lambda batch: model(batch).loss, validate=lambda: {"score": 0.0},
        ...                   save_best=model.save_pretrained)
        >>> result = trainer.fit(train_items)
    """

    def __init__(
        self,
        *,
        module: torch.nn.Module,
        config: TrainingConfig,
        loss_fn: Callable[[list[Any]], LossOutput],
        validate: Callable[[], dict[str, float]],
        save_best: Callable[[Path], Any],
        name: str = "train",
    ) -> None:
        self.module, self.config, self.loss_fn = module, config, loss_fn
        self.validate, self.save_best, self.name = validate, save_best, name
        self.out = Path(config.output_dir)

    # ---------------------------------------------------------------------------- resume state
    @property
    def _state_file(self) -> Path:
        return self.out / "state" / "trainer.pt"

    def _save_state(self, optimizer: Any, scheduler: Any, progress: dict[str, Any]) -> None:
        import io

        buffer = io.BytesIO()
        torch.save(
            {
                "model": self.module.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "progress": progress,
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
            },
            buffer,
        )
        atomic_write_bytes(self._state_file, buffer.getvalue())

    def _load_state(self, optimizer: Any, scheduler: Any) -> dict[str, Any] | None:
        if not (self.config.resume and self._state_file.exists()):
            return None
        state = torch.load(self._state_file, map_location="cpu", weights_only=False)
        self.module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        progress = state["progress"]
        logger.info("resuming %s at epoch %d, step %d", self.name, progress["epoch"], progress["step"])
        return progress

    # ------------------------------------------------------------------------------------ fit
    def fit(self, items: Sequence[Any]) -> TrainingResult:
        """Train on ``items``; returns the history and the best checkpoint directory."""
        from tqdm.auto import tqdm

        config = self.config
        if not items:
            raise ValueError(f"{self.name}: no training items")
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        micro_per_epoch = math.ceil(len(items) / config.batch_size)
        steps_per_epoch = math.ceil(micro_per_epoch / config.gradient_accumulation_steps)
        total_steps = steps_per_epoch * config.epochs
        warmup = max(1, int(config.warmup_ratio * total_steps))
        parameters = [p for p in self.module.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: min(
                (step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup))
            ),
        )
        progress = self._load_state(optimizer, scheduler) or {
            "epoch": 0, "micro": 0, "step": 0, "history": [], "best": -math.inf, "best_epoch": 0,
            "bad_epochs": 0, "sums": {}, "count": 0, "validated": False,
        }  # fmt: skip
        if not progress["validated"]:  # the untrained model is the first candidate for "best"
            self._end_epoch(progress, optimizer, scheduler, epoch=0)
        best_dir = self.out / "best"
        bar = tqdm(
            total=total_steps,
            initial=progress["step"],
            desc=self.name,
            unit="step",
            disable=not config.progress,
        )
        first_step, step_seconds = progress["step"], 0.0
        while progress["epoch"] < config.epochs and not self._stopped(progress):
            epoch = progress["epoch"]
            order = np.random.default_rng(config.seed + epoch).permutation(len(items))
            self.module.train()
            for micro in range(progress["micro"], micro_per_epoch):
                chunk = [items[i] for i in order[micro * config.batch_size : (micro + 1) * config.batch_size]]
                started = time.perf_counter()
                output = self.loss_fn(chunk)
                loss, extras = output if isinstance(output, tuple) else (output, {})
                (loss / config.gradient_accumulation_steps).backward()
                sums = progress["sums"]
                for key, value in {"loss": float(loss.detach()), **extras}.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                progress["count"] += 1
                progress["micro"] = micro + 1
                last = micro + 1 == micro_per_epoch
                if (micro + 1) % config.gradient_accumulation_steps == 0 or last:
                    torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    progress["step"] += 1
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{sums['loss'] / progress['count']:.4f}")
                    if progress["step"] % config.checkpoint_every == 0 and not last:
                        self._save_state(optimizer, scheduler, progress)
                step_seconds += time.perf_counter() - started
            self._end_epoch(progress, optimizer, scheduler, epoch=epoch + 1)
        bar.close()
        return TrainingResult(
            history=progress["history"],
            best_score=progress["best"],
            best_epoch=progress["best_epoch"],
            best_dir=best_dir if best_dir.exists() else None,
            steps=progress["step"] - first_step,
            step_seconds=step_seconds,
        )

    def _stopped(self, progress: dict[str, Any]) -> bool:
        patience = self.config.patience
        return patience is not None and progress["bad_epochs"] >= patience

    def _end_epoch(self, progress: dict[str, Any], optimizer: Any, scheduler: Any, *, epoch: int) -> None:
        self.module.eval()
        metrics = self.validate()
        record = {"epoch": epoch, "step": progress["step"], **metrics}
        if progress["count"]:
            record.update({f"train_{k}": v / progress["count"] for k, v in progress["sums"].items()})
        progress["history"].append(record)
        if metrics["score"] > progress["best"]:
            progress.update(best=metrics["score"], best_epoch=epoch, bad_epochs=0)
            self.save_best(self.out / "best")
        elif epoch > 0:
            progress["bad_epochs"] += 1
        progress.update(epoch=epoch, micro=0, sums={}, count=0, validated=True)
        self._save_state(optimizer, scheduler, progress)
        atomic_write_json(self.out / "history.json", progress["history"])
        plot_history(progress["history"], self.out / "curves.png", title=self.name)
        logger.info("%s epoch %d: %s", self.name, epoch, record)


def plot_history(history: Sequence[dict[str, float]], path: str | Path, *, title: str = "") -> Path:
    """Training curves: one panel per recorded quantity against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in dict.fromkeys(k for row in history for k in row) if k not in ("epoch", "step")]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(row["epoch"], row[key]) for row in history if key in row]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def config_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready view of a config dataclass (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}


def validation_scores(
    program: PersonalizedRAG, valset: Sequence[dspy.Example], batch_size: int = 16
) -> dict[str, float]:
    """Mean Eval (``score``, higher is better) and the task's metrics of ``program`` on ``valset``."""
    outputs: list[str] = []
    for start in range(0, len(valset), batch_size):
        chunk = valset[start : start + batch_size]
        predictions = program.batch_forward([e.input for e in chunk], [e.profile for e in chunk])
        outputs.extend(p.output for p in predictions)
    task = program.task
    golds = [str(e.output) for e in valset]
    score = sum(task.eval(g, o) for g, o in zip(golds, outputs)) / len(valset)
    return {"score": score, **task.evaluate(outputs, golds, [e.input for e in valset])}
