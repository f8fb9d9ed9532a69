"""The demo's questions, and the data and reader ``examples/`` train and report on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimizers.demo.config import DemoConfig
from optimizers.demo.reader import finetune_reader

__all__ = ["ExampleData", "carved_splits", "example_data", "write_sample_task"]


def write_sample_task(config: DemoConfig) -> Path:
    """The demo's sample task at ``config``'s sizes and seed, written into ``config.out / "data"``."""
    from persona_rag.data import make_sample_task

    return make_sample_task(
        Path(config.out) / "data",
        n_users=config.users,
        profile_size=config.profile_size,
        questions_per_user=config.questions,
        seed=config.seed,
    )


def carved_splits(data: str | Path) -> tuple[Any, list[Any], list[Any], list[Any]]:
    """The task of the LaMP-format folder ``data`` and its questions: training (``fit``) and
    validation questions carved from the train split, so that checkpoint choice never sees a
    reported question, and the held-out ``test`` split."""
    from persona_rag.data import carve_validation, load_lamp

    split = load_lamp(data, "train")
    carved = carve_validation(split.examples())
    return split.task, carved.train, carved.val, load_lamp(data, "test", task=split.task).examples()


@dataclass
class ExampleData:
    """What an example trains and reports on: train (``fit``) and validation questions carved from
    the train split, held-out ``test`` questions, and the reader (a ``dspy.LM``)."""

    task: Any
    fit: list[Any]
    val: list[Any]
    test: list[Any]
    reader: Any


def example_data(data: str | Path | None, *, out: str | Path, tiny: bool = False, reader: str | None = None):
    """The examples' data and reader: the demo's sample task (or LaMP files in ``data``) and the
    offline reader fine-tuned on its train split (reused from the demo when the data match), or
    the local model ``reader`` as given.

    ``tiny`` keeps a few questions of each split, so that an example runs in seconds (its numbers
    then mean nothing).
    """
    from persona_rag.generator import Generator
    from persona_rag.lm import local_lm
    from persona_rag.lm.loading import resolve_dtype
    from persona_rag.program import PersonalizedRAG
    from persona_rag.retrievers import DenseRetriever

    config = DemoConfig.tiny(Path(out)) if tiny else DemoConfig(out=Path(out))
    sample = data is None
    task, fit, val, test = carved_splits(write_sample_task(config) if sample else data)
    if tiny:
        fit, val, test = fit[:6], val[:3], test[:4]
    if reader is None:
        # On the demo's own sample task the demo's fine-tuned reader is the one to reuse.
        shared = sample and not tiny
        reader_dir = DemoConfig().out / "reader" if shared else Path(out) / "reader"
        program = PersonalizedRAG(task=task, retriever=DenseRetriever(), generator=Generator(lm=local_lm()))
        reader = str(finetune_reader(program, fit, val, out=reader_dir, examples=config.reader_examples))
    # As in the demo: bfloat16 answers where the hardware computes them natively (training is float32).
    answering = local_lm(reader, dtype=resolve_dtype("auto"))
    return ExampleData(task=task, fit=fit, val=val, test=test, reader=answering)
