"""Fine-tune the in-process reader (LaMP's "fine-tuned" setting) on a task's training set.

The generator learns to answer the task from prompts that hold ``k`` retrieved profile items,
which is what lets a small offline model use a profile at all (zero-shot, SmolLM2-135M answers
"1" to every rating question). It is DSPy's BootstrapFinetune idea for an in-process model:
``compile(program, trainset=..., valset=...)`` returns a new program whose generator points at
the best checkpoint, saved in Hugging Face format.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dspy
import torch
from dspy.teleprompt import Teleprompter

from optimizers import distributed
from optimizers.configs import ReaderFinetuneConfig
from optimizers.training import (
    Trainer,
    TrainingResult,
    config_dict,
    refuse_unused_compile_arguments,
    validation_scores,
)
from persona_rag.errors import ConfigError
from persona_rag.io import atomic_directory, atomic_write_json
from persona_rag.lm import LocalLM, local_lm, release_local_lm, resolve_model
from persona_rag.pretrained import load_pretrained
from persona_rag.program import PersonalizedRAG
from persona_rag.retrievers import Retriever
from persona_rag.tasks import get_task

__all__ = [
    "TRAINING_RECORD",
    "ReaderFinetune",
    "ReaderFinetuneConfig",
    "answer_loss",
    "check_reader_task",
    "reader_training_ids",
]

# Written into the checkpoint: the question ids it was trained and validated on.
TRAINING_RECORD = "persona_rag_training.json"


def reader_training_ids(model: str | Path) -> set[str]:
    """The question ids a fine-tuned reader checkpoint was trained or validated on (empty for a
    model without a record, e.g. the packaged zero-shot one), so a report can refuse to score it
    on them."""
    record = Path(model) / TRAINING_RECORD
    if not record.is_file():
        return set()
    data = json.loads(record.read_text())
    return {str(i) for i in [*data.get("train_ids", []), *data.get("val_ids", [])]}


def check_reader_task(model: str | Path, task: str) -> None:
    """Refuse a reader fine-tuned for another task: its answers are in that task's form (a rating
    where a subject is asked), so every signal learnt from it would be noise. Readers without a
    record (the packaged zero-shot model, any hub model) pass."""
    record = Path(model) / TRAINING_RECORD
    if not record.is_file():
        return
    trained = json.loads(record.read_text(encoding="utf-8")).get("task")
    if trained is not None and get_task(trained).name != get_task(task).name:
        raise ConfigError(
            f"{record}: this reader was fine-tuned for {trained}, not {task}; fine-tune one for {task} "
            f"(persona-rag finetune --data <{task} folder>) or pass the zero-shot model"
        )


logger = logging.getLogger(__name__)


def answer_loss(model: Any, batch: Sequence[tuple[list[int], list[int]]], pad: int) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens after their prompts (right-padded rows).

    The same loss as ``model(..., labels=...)`` with the prompts masked, but only the positions
    that predict an answer token go through the LM head: with a 49k vocabulary the full-sequence
    logits, their softmax and their gradient were the largest tensors of a training step.
    """
    width = max(len(p) + len(a) for p, a in batch)
    ids, mask, predicts, targets = [], [], [], []
    for prompt_ids, answer_ids in batch:
        row = prompt_ids + answer_ids
        fill = width - len(row)
        ids.append(row + [pad] * fill)
        mask.append([1] * len(row) + [0] * fill)
        first = len(prompt_ids) - 1  # position t predicts token t + 1
        predicts.append([first <= t < first + len(answer_ids) for t in range(width)])
        targets.extend(answer_ids)
    device = model.device
    logits = model(
        input_ids=torch.tensor(ids, device=device),
        attention_mask=torch.tensor(mask, device=device),
        logits_to_keep=torch.tensor(predicts, device=device),  # boolean: (answer tokens, vocabulary)
    ).logits
    return torch.nn.functional.cross_entropy(logits.float(), torch.tensor(targets, device=device))


def _freeze_below(model: Any, trainable_layers: int) -> None:
    """Freeze every weight but the last ``trainable_layers`` decoder layers and the final norm."""
    layers = getattr(model.get_decoder(), "layers", None)
    if layers is None or not 1 <= trainable_layers <= len(layers):
        raise ConfigError(
            f"trainable_layers={trainable_layers}: the model has "
            f"{'no list of decoder layers' if layers is None else f'{len(layers)} decoder layers'}"
        )
    model.requires_grad_(False)
    for layer in layers[len(layers) - trainable_layers :]:
        layer.requires_grad_(True)
    norm = getattr(model.get_decoder(), "norm", None)
    if norm is not None:
        norm.requires_grad_(True)


class ReaderFinetune(Teleprompter):
    """Fine-tune a PersonalizedRAG program's local generator with retrieved items in each prompt.

    Args:
        config: training settings.
        retrievers: retrievers that fill the training prompts, assigned to examples in turn, so one
            reader learns to read what any of them returns (default: the program's retriever).

    Example (it loads or trains a model, so it is shown here and not run as a doctest)::

        from optimizers import ReaderFinetune, ReaderFinetuneConfig
        from persona_rag import BM25Retriever, NoRetriever, PersonalizedRAG, load_lamp
        train = load_lamp("data/movielens_rating", "train").examples()
        dev = load_lamp("data/movielens_rating", "dev").examples()
        config = ReaderFinetuneConfig(output_dir="runs/reader", max_examples=256)
        optimizer = ReaderFinetune(config=config, retrievers=[BM25Retriever(), NoRetriever()])
        tuned = optimizer.compile(PersonalizedRAG(task="LaMP-3"), trainset=train, valset=dev[:50])
        tuned.save("tuned.json")   # references runs/reader/best
    """

    def __init__(
        self, *, config: ReaderFinetuneConfig | None = None, retrievers: Sequence[Retriever] | None = None
    ) -> None:
        super().__init__()
        self.config = config or ReaderFinetuneConfig()
        self.retrievers = list(retrievers) if retrievers else None
        self.result: TrainingResult | None = None

    # --------------------------------------------------------------------------- the data
    def _prompts(self, program: PersonalizedRAG, examples: Sequence[dspy.Example]) -> list[str]:
        retrievers = self.retrievers or [program.retriever]
        k = self.config.k or program.k
        prompts: list[str | None] = [None] * len(examples)
        for r, retriever in enumerate(retrievers):
            chosen = list(range(r, len(examples), len(retrievers)))
            results = program.batch_retrieve(
                [examples[i].input for i in chosen],
                [examples[i].profile for i in chosen],
                retriever=retriever,
                k=k,
            )
            for i, result in zip(chosen, results):
                prompts[i] = program.build_prompt(examples[i].input, result)
        return prompts  # type: ignore[return-value]

    def _encode(
        self, lm: LocalLM, program: PersonalizedRAG, prompt: str, answer: str
    ) -> tuple[list[int], list[int]]:
        """Token ids of the prompt as the generator renders it at inference, and of the answer."""
        tokenizer = lm.tokenizer
        prompt_ids = tokenizer.encode(lm.render(program.generator.messages(prompt)), add_special_tokens=False)
        answer_ids = [*tokenizer.encode(answer, add_special_tokens=False), tokenizer.eos_token_id]
        return prompt_ids, answer_ids

    def _fit(
        self, items: list[tuple[list[int], list[int]]], budget: int | None
    ) -> list[tuple[list[int], list[int]]]:
        """Apply ``max_length``: longer sequences keep the end of their prompt, with a warning,
        since inference reads the whole prompt (``budget``: the program's prompt budget)."""
        limit = self.config.max_length
        if limit is None:
            return items
        long = sum(len(p) + len(a) > limit for p, a in items)
        if long:
            logger.warning(
                "reader: %d of %d training sequences exceed max_length=%d and lose the beginning of their "
                "prompt, which inference reads whole (prompt budget %s tokens plus the chat template); "
                "raise --max-length or lower --max-input-tokens",
                long,
                len(items),
                limit,
                budget,
            )
        return [(p[-max(limit - len(a), 1) :], a) for p, a in items]

    # ---------------------------------------------------------------------------- compile
    def compile(
        self,
        student: PersonalizedRAG,
        *,
        trainset: Sequence[dspy.Example],
        teacher: Any = None,
        valset: Sequence[dspy.Example] | None = None,
        **kwargs: Any,
    ) -> PersonalizedRAG:
        """Return a copy of ``student`` whose generator is the fine-tuned reader.

        ``teacher`` and further keyword arguments exist for DSPy's signature and are refused: the
        reader learns the gold answers of ``trainset``.
        """
        refuse_unused_compile_arguments(self, teacher, kwargs)
        config = self.config
        program = student.deepcopy()
        base = program.generator.local_model
        if base is None:
            raise ConfigError(
                "ReaderFinetune trains an in-process model (Generator(lm=local_lm(...)), --model); "
                "for a model behind a server (--lm) use dspy.BootstrapFinetune with that provider"
            )
        trainset = list(trainset)[: config.max_examples]
        valset = list(valset or [])[: config.max_val_examples]
        if not valset:
            raise ConfigError("ReaderFinetune needs a valset for early stopping and checkpoint choice")
        out = Path(config.output_dir)
        if distributed.is_main():
            atomic_write_json(out / "config.json", {**config_dict(config), "base_model": base.name})
        logger.info("building %d training prompts", len(trainset))
        prompts = self._prompts(program, trainset)  # budgeted with the base's tokenizer

        # The base's weights are not needed beside the copy that trains: the process-wide instance
        # is forgotten, so (unless the caller holds it) only the trained copy is in memory. A later
        # call of the base model loads it again, in about a second from its cached files.
        base_name, dtype = base.name, base.dtype
        weights = {"base_files": base.files_fingerprint, "tokenizer": base.tokenizer}
        weights |= {"device": base.device, "batch_size": base.batch_size}
        del base
        release_local_lm(base_name)
        gc.collect()
        self._train(program, prompts, trainset, valset, base_name=base_name, **weights)
        gc.collect()  # the trained copy, its gradients and Adam's moments go before the best loads
        best = out / "best"
        release_local_lm(str(best))  # a reader of the same path loaded earlier is stale now
        program.generator.predict.lm = local_lm(
            str(best), max_tokens=program.generator.max_new_tokens, dtype=dtype
        )  # trained in float32, answering at the precision the caller chose
        program._compiled = True
        return program

    def _train(
        self,
        program: PersonalizedRAG,
        prompts: list[str],
        trainset: list[dspy.Example],
        valset: list[dspy.Example],
        *,
        base_name: str,
        base_files: str,
        tokenizer: Any,
        device: str,
        batch_size: int,
    ) -> None:
        """Train a fresh copy of the base model's weights and write the best to ``output_dir/best``;
        the copy and the optimizer's state are dropped when this returns."""
        from transformers import AutoModelForCausalLM

        config = self.config
        out = Path(config.output_dir)
        model = load_pretrained(AutoModelForCausalLM, resolve_model(base_name), dtype=torch.float32)
        model = model.to(device)
        if config.trainable_layers is not None:
            _freeze_below(model, config.trainable_layers)
        training_name = f"{out}/training"
        training_lm = LocalLM.wrap(model, tokenizer, name=training_name, batch_size=batch_size)
        items = self._fit(
            [self._encode(training_lm, program, p, str(e.output)) for p, e in zip(prompts, trainset)],
            program.settings.max_input_tokens,
        )
        pad = tokenizer.pad_token_id

        def loss_fn(batch: list[tuple[list[int], list[int]]]) -> torch.Tensor:
            return answer_loss(model, batch, pad)

        def validate() -> dict[str, float]:
            evaluator = program.deepcopy()  # fresh caches: the weights changed since last time
            evaluator.generator.predict.lm = local_lm(training_name)
            return validation_scores(evaluator, valset)

        record = {
            "task": program.task.name,
            "train_ids": [str(e.get("id", "")) for e in trainset],
            "val_ids": [str(e.get("id", "")) for e in valset],
        }

        def save_best(directory: Path) -> None:
            with atomic_directory(directory) as temporary:
                model.save_pretrained(temporary)
                tokenizer.save_pretrained(temporary)
                (temporary / TRAINING_RECORD).write_text(json.dumps(record))

        trainer = Trainer(
            module=model,
            config=config,
            loss_fn=loss_fn,
            validate=validate,
            save_best=save_best,
            name="reader",
            base=base_files,
        )
        self.result = trainer.fit(items)
        release_local_lm(training_name)
