"""The reader the demo and the examples share: the offline model fine-tuned to use profile items."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optimizers.demo.config import POOL
from optimizers.demo.stages import encoder_key, examples_key, run_stage, stage_key
from persona_rag.cli_options import make_console
from persona_rag.errors import ConfigError

__all__ = ["finetune_reader"]


def finetune_reader(
    program: Any,
    trainset: Sequence[Any],
    valset: Sequence[Any],
    *,
    out: str | Path,
    examples: int = 160,
    epochs: int = 1,
    seed: int = 0,
) -> Path:
    """The fine-tuned reader checkpoint for ``program``'s local generator (LaMP's fine-tuned
    setting), trained with none, recency, BM25 and dense items filling the prompts in turn.

    A finished fine-tune on the same data and settings in ``out`` is reused, so the demo and the
    examples share it and a second run skips it. Returns the ``best`` checkpoint directory.
    """
    from optimizers.reader import ReaderFinetune, ReaderFinetuneConfig
    from persona_rag.lm import LocalEngine, model_fingerprint
    from persona_rag.retrievers import make_retriever

    # The base by name and content, not loaded: a reused fine-tune never loads it at all, and a
    # fine-tune that runs frees it while its copy trains.
    engine = getattr(program.generator.lm, "engine", None)
    if not isinstance(engine, LocalEngine):
        raise ConfigError("the reader fine-tune trains an in-process model; a server model is used as it is")
    config = ReaderFinetuneConfig(
        output_dir=Path(out),
        epochs=epochs,
        max_examples=examples,
        max_val_examples=len(valset),
        k=program.k,
        learning_rate=1e-4,
        patience=None,
        resume=False,
        seed=seed,
        trainable_layers=12,  # of 30: the demo's reader stage stays under 3 GiB (README)
    )
    retrievers = [make_retriever(kind) for kind in POOL[:3]] + [program.retriever]
    key = stage_key(
        examples_key(trainset),
        examples_key(valset),
        config.identity(),
        model_fingerprint(engine.model),
        program.retriever.dump_state(),
        encoder_key(program.retriever.encoder.name),
    )
    console = make_console()

    def train() -> None:
        name = Path(engine.model).name
        console.print(f"reader: fine-tuning {name} to read profile items ({len(trainset)} questions)")
        ReaderFinetune(config=config, retrievers=retrievers).compile(
            program, trainset=trainset, valset=valset
        )

    trained = run_stage(Path(out), key, train)
    if not trained:
        console.print(f"reader: reusing the fine-tuned checkpoint {Path(out) / 'best'}")
    return Path(out) / "best"
