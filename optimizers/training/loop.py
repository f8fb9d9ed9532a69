"""The training loop shared by persona-rag's optimizers.

Adam(W) with linear warm-up then linear decay, gradient clipping, gradient accumulation to an
effective batch, validation after every epoch with early stopping, the best weights written
atomically, and a resumable state (:mod:`optimizers.training.state`): an interrupted run started
again with the same output directory continues where its last checkpoint left off, repeating no
finished optimizer step. Per-epoch losses and validation metrics go to ``history.json`` and
``curves.png``.

Under ``torchrun`` or ``accelerate launch`` (see :mod:`optimizers.distributed`) each process
computes its share of every optimizer step's micro-batches and the gradients are summed over the
processes, so the effective batch stays ``batch_size x gradient_accumulation_steps`` whatever
the process count, N processes reach one process's weights (to float rounding), and a run
resumes with any process count. Only the main process validates and writes the state, the best
weights, ``history.json`` and ``curves.png``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optimizers import distributed
from optimizers.plots import curves
from optimizers.training.config import TrainingConfig
from optimizers.training.state import read_state, restore_state, write_state
from persona_rag.errors import DataError
from persona_rag.fingerprint import stable_hash
from persona_rag.io import atomic_write_bytes, atomic_write_json

__all__ = ["Trainer", "TrainingResult", "stable_seed"]

logger = logging.getLogger(__name__)

LossOutput = torch.Tensor | tuple[torch.Tensor, dict[str, float]]


@dataclass
class TrainingResult:
    """What a run produced: per-epoch history, where the best weights are, and its speed.

    Attributes:
        steps: optimizer steps of the whole run, an interrupted and resumed one included.
        step_seconds: wall time of those steps (forward, backward, update; validation excluded;
            a step lost to an interruption is not counted), so ``steps / step_seconds`` is the
            training throughput a user can size a run with, whichever process took the steps.
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
        base: what the weights start from, e.g. the base model's content fingerprint (part of the
            run's fingerprint, so a resume never continues from another base model).
        shown: extras of ``loss_fn`` the progress bar shows beside the loss, as this epoch's mean
            per optimizer step (e.g. the reader calls an online optimizer makes per step).

    Example (a one-weight model learns y = 2x; ``runs/x`` receives the best weights and history):
        >>> model = torch.nn.Linear(1, 1, bias=False)
        >>> _ = torch.nn.init.zeros_(model.weight)
        >>> items = [(float(x), 2.0 * x) for x in range(1, 9)]
        >>> def loss_fn(batch):
        ...     x, y = torch.tensor([[a, b] for a, b in batch]).T
        ...     return torch.nn.functional.mse_loss(model(x[:, None]).squeeze(-1), y)
        >>> def save_best(directory):
        ...     directory.mkdir(parents=True, exist_ok=True)
        ...     torch.save(model.state_dict(), directory / "weights.pt")
        >>> config = TrainingConfig(
        ...     output_dir="runs/x", epochs=5, learning_rate=0.1, batch_size=8,
        ...     gradient_accumulation_steps=1, patience=None, progress=False,
        ... )
        >>> validate = lambda: {"score": -loss_fn(items).item()}
        >>> before = validate()["score"]
        >>> trainer = Trainer(module=model, config=config, loss_fn=loss_fn, validate=validate,
        ...                   save_best=save_best)
        >>> result = trainer.fit(items)
        >>> result.best_score > before, (result.best_dir / "weights.pt").exists()
        (True, True)
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
        base: Any = None,
        shown: Sequence[str] = (),
    ) -> None:
        self.module, self.config, self.loss_fn = module, config, loss_fn
        self.validate, self.save_best, self.name, self.base = validate, save_best, name, base
        self.shown = tuple(shown)
        self.out = Path(config.output_dir)
        self._run: dict[str, Any] = {}

    # ---------------------------------------------------------------------------- resume state
    @property
    def _state_dir(self) -> Path:
        return self.out / "state"

    def run_fingerprint(self, items: Sequence[Any]) -> dict[str, Any]:
        """What this run's result depends on: settings, training items (by their ``identity()``
        where they have one) and the base model."""
        data = [item.identity() if hasattr(item, "identity") else item for item in items]
        run = {"config": self.config.identity(), "data": stable_hash(data), "base": self.base}
        return json.loads(json.dumps(run, default=str))  # as it reads back from trainer.json

    def _save_state(
        self, optimizer: Any, scheduler: Any, progress: dict[str, Any], *, finished: bool = False
    ) -> None:
        """Write the resume state (:func:`~optimizers.training.state.write_state`), from the main
        process only: every process holds the same weights and progress."""
        if not distributed.is_main():
            return
        write_state(
            self._state_dir,
            module=self.module,
            optimizer=optimizer,
            scheduler=scheduler,
            run=self._run,
            progress=progress,
            finished=finished,
        )

    def _load_state(self, optimizer: Any, scheduler: Any) -> dict[str, Any] | None:
        """The progress to continue from: ``None`` to start fresh (``resume=False`` or no state),
        a finished run's progress as it is, else the state restored into the weights, the
        optimizer and the scheduler."""
        if not (self.config.resume and self._state_dir.exists()):
            return None
        state = read_state(self._state_dir, self._run)
        if state.get("finished") and not (self._state_dir / "trainer.pt").exists():
            logger.info("%s: finished already; its best weights are in %s", self.name, self.out / "best")
            return state["progress"]
        restore_state(self._state_dir, state, module=self.module, optimizer=optimizer, scheduler=scheduler)
        progress = state["progress"]
        logger.info("resuming %s at epoch %d, step %d", self.name, progress["epoch"], progress["step"])
        return progress

    # ------------------------------------------------------------------------------------ fit
    def fit(self, items: Sequence[Any]) -> TrainingResult:
        """Train on ``items``; returns the history and the best checkpoint directory."""
        from tqdm.auto import tqdm

        config = self.config
        if not items:
            raise DataError(f"{self.name}: no training items (is the train split empty?)")
        self._run = self.run_fingerprint(items)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        micro_per_epoch = math.ceil(len(items) / config.batch_size)
        steps_per_epoch = math.ceil(micro_per_epoch / config.gradient_accumulation_steps)
        total_steps = steps_per_epoch * config.epochs
        warmup = max(1, int(config.warmup_ratio * total_steps))
        parameters = [p for p in self.module.parameters() if p.requires_grad]
        world, me, device = distributed.world_size(), distributed.rank(), parameters[0].device
        if world > 1 and config.gradient_accumulation_steps % world:
            logger.warning(
                "%s: %d micro-batches per optimizer step do not split evenly over %d processes; some "
                "wait at every step (make --grad-accum a multiple of the process count)",
                self.name, config.gradient_accumulation_steps, world,
            )  # fmt: skip
        optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: min(
                (step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup))
            ),
        )
        progress = self._load_state(optimizer, scheduler) or {
            "epoch": 0, "micro": 0, "step": 0, "history": [], "best": -math.inf, "best_epoch": 0,
            "bad_epochs": 0, "sums": {}, "count": 0, "validated": False, "step_seconds": 0.0,
        }  # fmt: skip
        distributed.barrier()  # every process has read the state before the main one replaces it
        if not progress["validated"]:  # the untrained model is the first candidate for "best"
            self._end_epoch(progress, optimizer, scheduler, epoch=0)
        best_dir = self.out / "best"
        bar = tqdm(
            total=total_steps,
            initial=progress["step"],
            desc=self.name,
            unit="step",
            disable=not (config.progress and distributed.is_main()),
        )
        local: dict[str, Any] = {"count": 0, "sums": {}}  # this process's share of the current step
        while progress["epoch"] < config.epochs and not self._stopped(progress):
            epoch = progress["epoch"]
            order = np.random.default_rng(config.seed + epoch).permutation(len(items))
            self.module.train()
            for micro in range(progress["micro"], micro_per_epoch):
                started = time.perf_counter()
                if (micro % config.gradient_accumulation_steps) % world == me:  # this process's share
                    rows = order[micro * config.batch_size : (micro + 1) * config.batch_size]
                    self._backward([items[i] for i in rows], local, seed=(epoch, micro), device=device)
                progress["micro"] = micro + 1
                last = micro + 1 == micro_per_epoch
                if (micro + 1) % config.gradient_accumulation_steps == 0 or last:
                    _sum_gradients(parameters)
                    _add_sums(progress, distributed.gather_json(local))
                    local = {"count": 0, "sums": {}}
                    torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    progress["step"] += 1
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, **self._postfix(progress))
                    if progress["step"] % config.checkpoint_every == 0 and not last:
                        self._save_state(optimizer, scheduler, progress)
                progress["step_seconds"] = progress.get("step_seconds", 0.0) + time.perf_counter() - started
            self._end_epoch(progress, optimizer, scheduler, epoch=epoch + 1)
        bar.close()
        return TrainingResult(
            history=progress["history"],
            best_score=progress["best"],
            best_epoch=progress["best_epoch"],
            best_dir=best_dir if best_dir.exists() else None,
            steps=progress["step"],
            step_seconds=progress.get("step_seconds", 0.0),
        )

    def _backward(
        self, chunk: list[Any], local: dict[str, Any], *, seed: tuple[int, int], device: torch.device
    ) -> None:
        """Accumulate one micro-batch's gradient (its loss over the step's micro-batch count) and
        add its loss and extras to this process's sums of the step."""
        # Randomness (dropout, RL's sampling) is a function of the micro-batch, so the result does
        # not depend on which process computes it, nor on where a run was resumed.
        torch.manual_seed(stable_seed(self.config.seed, *seed))
        with distributed.autocast(device, self.config.mixed_precision):
            output = self.loss_fn(chunk)
        loss, extras = output if isinstance(output, tuple) else (output, {})
        (loss / self.config.gradient_accumulation_steps).backward()
        local["count"] += 1
        for key, value in {"loss": float(loss.detach()), **extras}.items():
            local["sums"][key] = local["sums"].get(key, 0.0) + float(value)

    def _postfix(self, progress: dict[str, Any]) -> dict[str, str]:
        """The bar's figures: the epoch's mean loss per micro-batch, and each :attr:`shown` extra
        per optimizer step (its epoch sum over the steps taken)."""
        sums, count = progress["sums"], progress["count"]
        steps = math.ceil(count / self.config.gradient_accumulation_steps)
        shown = {key: f"{sums[key] / steps:.3g}" for key in self.shown if key in sums}
        return {"loss": f"{sums['loss'] / count:.4f}", **shown}

    def _stopped(self, progress: dict[str, Any]) -> bool:
        patience = self.config.patience
        return patience is not None and progress["bad_epochs"] >= patience

    def _end_epoch(self, progress: dict[str, Any], optimizer: Any, scheduler: Any, *, epoch: int) -> None:
        self.module.eval()
        main = distributed.is_main()
        # One process validates and the others take its figures, so every process makes the same
        # early-stopping decision; the weights are the same everywhere.
        metrics = distributed.broadcast_json(self.validate() if main else None)
        record = {"epoch": epoch, "step": progress["step"], **metrics}
        if progress["count"]:
            record.update({f"train_{k}": v / progress["count"] for k, v in progress["sums"].items()})
        progress["history"].append(record)
        if metrics["score"] > progress["best"]:
            progress.update(best=metrics["score"], best_epoch=epoch, bad_epochs=0)
            if main:
                self.save_best(self.out / "best")
        elif epoch > 0:
            progress["bad_epochs"] += 1
        progress.update(epoch=epoch, micro=0, sums={}, count=0, validated=True)
        finished = epoch >= self.config.epochs or self._stopped(progress)
        self._save_state(optimizer, scheduler, progress, finished=finished)
        if main:
            atomic_write_json(self.out / "history.json", progress["history"])
            atomic_write_bytes(self.out / "curves.png", curves(progress["history"], title=self.name))
            logger.info("%s epoch %d: %s", self.name, epoch, record)
        distributed.barrier()  # the best weights are on disk before any process reads them back


def stable_seed(*parts: int) -> int:
    """A torch seed from integers (the run's seed, the epoch, the micro-batch): the same in every
    process of a launch and in every later run, so a micro-batch's randomness is its own."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + int(part)) % (2**63 - 1)
    return value


def _sum_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Sum the accumulated gradients over the launch's processes (a no-op for one process).

    Each process divided its losses by the step's micro-batch count, so the sum is the gradient of
    the step's mean loss, exactly as one process accumulating every micro-batch would get it. A
    process with no micro-batch this step (or a parameter its loss did not reach) adds zeros.
    """
    if distributed.world_size() == 1:
        return
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    distributed.all_sum_tensors([p.grad for p in parameters])


def _add_sums(progress: dict[str, Any], parts: Sequence[dict[str, Any]]) -> None:
    """Add the processes' loss sums and micro-batch counts of one step to the epoch's running ones
    (in rank order, so every process holds the same figures)."""
    sums = progress["sums"]
    for part in parts:
        progress["count"] += part["count"]
        for key, value in part["sums"].items():
            sums[key] = sums.get(key, 0.0) + value
