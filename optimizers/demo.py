"""``persona-rag demo``: the paper's story on the project's own sample task, end to end.

1. A MovieLens-like sample task is written (:func:`persona_rag.data.make_sample_task`; how it is
   built is in its docstring and the README).
2. The reader learns to use profile items: LaMP's fine-tuned-reader setting, a short
   :class:`~optimizers.reader.ReaderFinetune` step (zero-shot, the offline 135M model answers "1"
   whatever it reads). A server model (``--lm``) is used as it is.
3. Fixed retrievers (NoPers, Recency, BM25, Dense, Dense served by a Chroma store), then
   ROPG-KD (the dense retriever tuned with the reader's feedback) and RSPG-Post (a selector over
   the pool, reading each member's answer).
4. Every trained part learns on the train split and picks its checkpoint on a validation slice
   carved from train (each user's latest train question); every row is scored on the test split,
   which no training or selection step sees.

Each trained stage records what it was trained from; a second run with the same settings loads
its checkpoint instead of training again, and the LLM feedback is cached, so it only evaluates.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_rag.cli_options import add_model_options, build_program, load_selector, make_console
from persona_rag.defaults import DEFAULT_LM
from persona_rag.errors import ConfigError
from persona_rag.fingerprint import directory_fingerprint, stable_hash

__all__ = [
    "DemoConfig",
    "DemoResult",
    "ExampleData",
    "add_demo",
    "example_data",
    "finetune_reader",
    "pool_results",
    "run_demo",
]

POOL = ("none", "recency", "bm25", "dense")
ROW_NAMES = {
    "none": "NoPers",
    "recency": "Recency",
    "bm25": "BM25",
    "dense": "Dense",
    "store": "Dense (Chroma store)",
    "ropg-kd": "ROPG-KD",
    "rspg-post": "RSPG-Post",
}


@dataclass(kw_only=True)
class DemoConfig:
    """The demo's sizes (defaults: the full demo; :meth:`tiny`: a seconds-long smoke run).

    Attributes:
        out: where the data, checkpoints, store, results, chart and caches go.
        users: simulated users of the sample task.
        profile_size: items each user rated before their first question.
        questions: train/dev/test questions per user (dev is written but not used).
        seed: the sample task's seed (not tuned: 0 is the default everywhere).
        reader_examples: training prompts of the reader fine-tune.
        reader_epochs: its epochs.
        train_examples: training questions of ROPG and RSPG (each costs an LLM answer per
            candidate or pool member); ``None``: all.
        candidates: ROPG's ``l``.
        ropg_epochs: ROPG-KD epochs.
        rspg_epochs: RSPG epochs.
    """

    out: Path = Path("runs/demo")
    users: int = 32
    profile_size: int = 24
    questions: tuple[int, int, int] = (6, 1, 2)
    seed: int = 0
    reader_examples: int = 160
    reader_epochs: int = 1
    train_examples: int | None = 96
    candidates: int = 8
    ropg_epochs: int = 3
    rspg_epochs: int = 4

    @classmethod
    def tiny(cls, out: Path, seed: int = 0) -> DemoConfig:
        """A run of every stage at toy size: for tests and a quick look, not for its numbers."""
        return cls(
            out=out,
            users=3,
            profile_size=8,
            questions=(3, 1, 2),
            seed=seed,
            reader_examples=6,
            candidates=4,
            ropg_epochs=1,
            rspg_epochs=1,
        )


@dataclass
class DemoResult:
    """What the demo wrote: its rows (``EvaluationResult``s, in table order) and the files."""

    results: list[Any]
    summary: str
    json_path: Path
    chart_path: Path


def _fingerprint(*parts: Any) -> str:
    """A stage's key: the content hash of what it is made from (models by their files' content,
    questions by their text and profiles, settings without the folders they write to), so a
    renamed or moved output folder reuses its stages and a changed input retrains."""
    return stable_hash(parts)[:16]


def _encoder_key(encoder: str) -> str:
    """An encoder by content when its files are local (the packaged default, a checkpoint), else
    by its hub name."""
    from persona_rag.encoders import resolve_encoder

    location = resolve_encoder(encoder)
    return directory_fingerprint(location) if Path(location).is_dir() else encoder


def _stage(directory: Path, key: str, train: Callable[[], None]) -> bool:
    """Run ``train`` unless ``directory`` holds a finished stage made from the same ``key``.

    Returns whether it trained. The key file is written after the stage finished, so an
    interrupted stage trains again (and its trainer resumes from its own checkpoints).
    """
    from persona_rag.io import atomic_write_json

    marker = directory / "demo_stage.json"
    if marker.exists() and json.loads(marker.read_text()).get("key") == key and (directory / "best").exists():
        return False
    train()
    atomic_write_json(marker, {"key": key})
    return True


@contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall time of the ``with`` block to ``seconds[stage]``: where a run's minutes went."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start


def _store_program(args: argparse.Namespace, task: Any, out: Path, test: list[Any]) -> tuple[Any, list]:
    """Dense retrieval served by an embedded Chroma store holding each user's history before their
    first test question (so no question sees its own future), and the test questions by user id."""
    import shutil

    from persona_rag.store import ProfileStore

    shutil.rmtree(out / "store", ignore_errors=True)
    store = ProfileStore(out / "store", task=task, encoder=args.encoder)
    first: dict[str, Any] = {}
    for example in test:
        first.setdefault(example.user_id, example.profile)
    store.add_many(first.items())
    return build_program(args, task, "dense", store), [ex.copy(profile=None) for ex in test]


def _summary(rows: dict[str, Any], metric: str, lower: bool) -> str:
    """One line saying what the table shows, computed from its numbers."""

    def better(a: str, b: str) -> bool:
        x, y = rows[a].metrics[metric], rows[b].metrics[metric]
        return x < y if lower else x > y

    personalised = [name for name in rows if name != "none" and not name.startswith("oracle")]
    beat_nopers = [ROW_NAMES[n] for n in personalised if better(n, "none")]
    tuned = [ROW_NAMES[n] for n in ("ropg-kd", "rspg-post") if better(n, "dense")]
    return (
        f"{len(beat_nopers)} of {len(personalised)} personalised rows beat NoPers on {metric}; "
        f"tuned rows better than untuned Dense: {', '.join(tuned) or 'none'} "
        f"({'lower' if lower else 'higher'} is better)."
    )


def _chart(results: Sequence[Any], metric: str, title: str, *, lower: bool) -> bytes:
    """A bar per row for ``metric``, the oracle drawn as a dashed line (PNG bytes)."""
    from optimizers.plots import bar_chart

    rows = [r for r in results if not r.name.startswith("oracle")]
    oracle = next((r for r in results if r.name.startswith("oracle (best")), None)
    colours = {"NoPers": "#999999", "ROPG-KD": "#4c72b0", "RSPG-Post": "#dd8452"}
    best = None if oracle is None else oracle.metrics[metric]
    return bar_chart(
        [r.name for r in rows],
        [r.metrics[metric] for r in rows],
        colours=[colours.get(r.name, "#8da0cb") for r in rows],
        title=title,
        ylabel=f"{metric} ({'lower' if lower else 'higher'} is better)",
        reference=None if best is None else (best, f"oracle over the pool: {best:.3f}"),
    )


def _examples_key(examples: Sequence[Any]) -> str:
    """Questions by content: id, input, gold and the whole profile."""
    fields = ("id", "input", "output", "profile", "user_id")
    return _fingerprint([{name: ex.get(name) for name in fields} for ex in examples])


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
    key = _fingerprint(
        _examples_key(trainset),
        _examples_key(valset),
        config.identity(),
        model_fingerprint(engine.model),
        program.retriever.dump_state(),
        _encoder_key(program.retriever.encoder.name),
    )
    console = make_console()

    def train() -> None:
        name = Path(engine.model).name
        console.print(f"reader: fine-tuning {name} to read profile items ({len(trainset)} questions)")
        ReaderFinetune(config=config, retrievers=retrievers).compile(
            program, trainset=trainset, valset=valset
        )

    trained = _stage(Path(out), key, train)
    if not trained:
        console.print(f"reader: reusing the fine-tuned checkpoint {Path(out) / 'best'}")
    return Path(out) / "best"


def pool_results(program: Any, test: list[Any], pool: dict[str, Any], selector: Any, cache: Path) -> list:
    """Rows for each pool member and for the selector, from one batched pass over the test questions.

    Every member's prompt is answered once (cached in the feedback cache, so a second run repeats
    nothing); a single-retriever row is that member's answer, the selector's row (``RSPG-Pre`` or
    ``RSPG-Post``) the answer of the member it picks: the answer the program itself gives
    (generation is deterministic). Half the LLM calls of evaluating the members and then the
    selector's program, which answers with every member again.
    """
    from optimizers.feedback import Feedback
    from optimizers.rspg import pool_selection_metrics
    from persona_rag.evaluation import EvaluationResult

    task = program.task
    start = time.perf_counter()
    rows = Feedback(program=program, cache=cache).compute_pool(test, pool)
    answered = time.perf_counter() - start
    names = list(pool)
    picks = {name: [m] * len(rows) for m, name in enumerate(names)}
    start = time.perf_counter()
    selections = selector.batch_select([list(r.prompts) for r in rows], [list(r.outputs) for r in rows])
    chosen_by = f"rspg-{selector.mode}"
    picks[chosen_by] = [names.index(s.chosen) for s in selections]
    selecting = time.perf_counter() - start
    results = []
    for name, chosen in picks.items():
        metrics = pool_selection_metrics(task, test, rows, chosen)
        success, _ = metrics.pop("success_rate"), metrics.pop("score")
        extra = {"success_rate": success} if name == chosen_by else {}
        predictions = [
            {
                "id": ex.get("id"),
                "output": task.parse(row.outputs[c], ex.input),
                "raw_output": row.outputs[c],
                "gold": ex.output,
                "retrieved": [],
                "retriever": names[c],
            }
            for ex, row, c in zip(test, rows, chosen)
        ]
        seconds = answered / len(names) if name in pool else answered + selecting
        label = f"RSPG-{selector.mode.capitalize()}" if name == chosen_by else ROW_NAMES.get(name, name)
        results.append(
            EvaluationResult(
                label,
                task.name,
                len(test),
                {**metrics, **extra},
                seconds,
                [],
                predictions,
            )
        )
    return results


def run_demo(args: argparse.Namespace, config: DemoConfig) -> DemoResult:
    """Run the demo's stages (see the module docstring) with the model options in ``args``."""
    from optimizers.ropg import ROPG_KD, ROPGKDConfig
    from optimizers.rspg import RSPG, RSPGConfig
    from persona_rag.data import carve_validation, load_lamp, make_sample_task
    from persona_rag.evaluation import evaluate_program, pool_bounds, results_table, write_results
    from persona_rag.io import atomic_write_bytes
    from persona_rag.lm.loading import resolve_dtype
    from persona_rag.portable import write_portable_json
    from persona_rag.retrievers import DenseRetriever, make_retriever
    from persona_rag.selector import Selector

    started = time.perf_counter()
    precision = resolve_dtype(args.dtype)  # what "auto" means on this machine
    stage_seconds: dict[str, float] = {}
    console = make_console()
    out = Path(config.out)
    data = make_sample_task(
        out / "data",
        n_users=config.users,
        profile_size=config.profile_size,
        questions_per_user=config.questions,
        seed=config.seed,
    )
    split = load_lamp(data, "train")
    task = split.task
    carved = carve_validation(split.examples())
    fit, val = carved.train, carved.val
    test = load_lamp(data, "test", task=task).examples()
    console.print(
        f"sample task in {data}: {len(fit)} training and {len(val)} validation questions (from the train "
        f"split), {len(test)} held-out test questions, {config.users} users"
    )

    if args.lm:
        console.print(f"reader: {args.lm} as served (the reader fine-tune step applies to local models only)")
        reader_key = _fingerprint(args.lm, args.api_base)
    else:
        with _timed(stage_seconds, "reader"):
            best = finetune_reader(
                build_program(args, task, "dense"),
                fit,
                val,
                out=out / "reader",
                examples=config.reader_examples,
                epochs=config.reader_epochs,
                seed=config.seed,
            )
        args = argparse.Namespace(**{**vars(args), "model": str(best)})
        reader_key = _fingerprint(directory_fingerprint(best), precision)

    cache = out / "feedback.sqlite"
    shared = {
        "feedback_cache": cache,
        "max_val_examples": len(val),
        "patience": None,
        "resume": False,
        "seed": config.seed,
        "batch_size": 8,
        "gradient_accumulation_steps": 1,
        "max_examples": config.train_examples,
    }
    ropg_config = ROPGKDConfig(
        output_dir=out / "ropg-kd",
        candidates=config.candidates,
        epochs=config.ropg_epochs,
        learning_rate=1e-4,
        validation_feedback=False,  # diagnostics only: l answers per validation question (README)
        **shared,
    )
    ropg_key = _fingerprint(
        reader_key, _examples_key(fit), ropg_config.identity(), _encoder_key(args.encoder), args.k
    )
    with _timed(stage_seconds, "ROPG-KD"):
        dense = build_program(args, task, "dense")  # loads the reader: part of this stage's cost
        if _stage(
            Path(ropg_config.output_dir),
            ropg_key,
            lambda: ROPG_KD(config=ropg_config).compile(dense, trainset=fit, valset=val),
        ):
            console.print("ROPG-KD: tuned the dense retriever on the reader's feedback")
    pool = {kind: make_retriever(kind) for kind in POOL[:3]}
    pool |= {
        "dense": dense.retriever,
        "ropg-kd": DenseRetriever(encoder=str(Path(ropg_config.output_dir) / "best")),
    }

    # The selector trains its encoder's last 2 of 6 layers: half the step time of training every
    # weight and less memory than activation checkpointing (benchmarks/selector_memory.py).
    rspg_config = RSPGConfig(
        output_dir=out / "rspg-post",
        epochs=config.rspg_epochs,
        learning_rate=1e-4,
        trainable_layers=2,
        gradient_checkpointing=False,
        **shared,
    )
    selector_file = Path(rspg_config.output_dir) / "selector.json"

    def select() -> None:
        student = build_program(args, task, "none")
        student.selector = Selector(pool=pool, mode="post")
        trained = RSPG(config=rspg_config).compile(student, trainset=fit, valset=val)
        write_portable_json(selector_file, trained.selector.dump_state(), root=out)

    rspg_key = _fingerprint(
        ropg_key, directory_fingerprint(Path(ropg_config.output_dir) / "best"), rspg_config.identity()
    )
    with _timed(stage_seconds, "RSPG-Post"):
        if _stage(Path(rspg_config.output_dir), rspg_key, select):
            console.print("RSPG-Post: trained the selector over the pool")

    with _timed(stage_seconds, "test answers"):
        results = pool_results(dense, test, pool, load_selector(selector_file), cache)
        store_program, by_user = _store_program(args, task, out, test)
        results.insert(
            4, evaluate_program(store_program, by_user, name=ROW_NAMES["store"], batch_size=args.batch_size)
        )
    results.append(pool_bounds(task, test, [r for r in results if r.name in {ROW_NAMES[n] for n in pool}])[0])
    rows = {key: next(r for r in results if r.name == name) for key, name in ROW_NAMES.items()}

    metric = task.primary_metric
    model = args.lm or f"{args.model} (fine-tuned from {DEFAULT_LM}, answering in {precision})"
    reader_name = args.lm or f"{DEFAULT_LM}, fine-tuned"
    title = f"persona-rag demo: sample task, {len(test)} held-out test questions, k={args.k}, reader {model}"
    summary = _summary(rows, metric, task.lower_is_better)
    console.print(results_table(results, title=title))
    console.print(summary)
    # What the run cost on this machine, stages reused from an earlier run included (README).
    wall_seconds = time.perf_counter() - started
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    json_path = write_results(
        out / "demo_results.json",
        results,
        task=task.name,
        split="test",
        k=args.k,
        model=model,
        summary=summary,
        train_questions=len(fit),
        validation_questions=len(val),
        wall_seconds=wall_seconds,
        stage_seconds=stage_seconds,
        peak_rss_gib=peak_rss_gib,
    )
    chart_title = f"persona-rag demo (sample task): {len(test)} held-out test questions, reader {reader_name}"
    chart = _chart(results, metric, chart_title, lower=task.lower_is_better)
    chart_path = atomic_write_bytes(out / "demo.png", chart)
    console.print(f"results: {json_path}; chart: {chart_path}")
    stages = ", ".join(f"{stage} {seconds / 60:.1f}" for stage, seconds in stage_seconds.items())
    console.print(
        f"this run: {wall_seconds / 60:.1f} min ({stages}), peak memory {peak_rss_gib:.2f} GiB (RSS)"
    )
    return DemoResult(results=results, summary=summary, json_path=json_path, chart_path=chart_path)


def cmd_demo(args: argparse.Namespace) -> int:
    config = (
        DemoConfig.tiny(Path(args.out), args.seed)
        if args.tiny
        else DemoConfig(out=Path(args.out), seed=args.seed)
    )
    run_demo(args, config)
    return 0


def add_demo(commands: Any) -> None:
    """Register ``persona-rag demo``."""
    demo = commands.add_parser(
        "demo",
        help="the paper's result on a generated sample task: fine-tuned reader, fixed retrievers, "
        "ROPG-KD and RSPG-Post on held-out questions",
    )
    demo.add_argument("--out", default="runs/demo", help="where the data, checkpoints, results and chart go")
    demo.add_argument("--seed", type=int, default=0, help="the sample task's seed")
    demo.add_argument(
        "--tiny", action="store_true", help="every stage at toy size (seconds; numbers meaningless)"
    )
    add_model_options(demo)
    # bfloat16 where the hardware computes it natively: 2.8x faster label scoring on this project's
    # CPUs, which is most of the demo's time (benchmarks/README.md).
    demo.set_defaults(func=cmd_demo, dtype="auto")


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
    from persona_rag.data import carve_validation, load_lamp, make_sample_task
    from persona_rag.generator import Generator
    from persona_rag.lm import local_lm
    from persona_rag.lm.loading import resolve_dtype
    from persona_rag.program import PersonalizedRAG
    from persona_rag.retrievers import DenseRetriever

    config = DemoConfig.tiny(Path(out)) if tiny else DemoConfig(out=Path(out))
    sample = data is None
    if sample:
        data = make_sample_task(
            Path(out) / "data",
            n_users=config.users,
            profile_size=config.profile_size,
            questions_per_user=config.questions,
            seed=config.seed,
        )
    split = load_lamp(data, "train")
    carved = carve_validation(split.examples())
    fit, val = carved.train, carved.val
    test = load_lamp(data, "test", task=split.task).examples()
    if tiny:
        fit, val, test = fit[:6], val[:3], test[:4]
    if reader is None:
        # On the demo's own sample task the demo's fine-tuned reader is the one to reuse.
        shared = sample and not tiny
        reader_dir = DemoConfig().out / "reader" if shared else Path(out) / "reader"
        program = PersonalizedRAG(
            task=split.task, retriever=DenseRetriever(), generator=Generator(lm=local_lm())
        )
        reader = str(finetune_reader(program, fit, val, out=reader_dir, examples=config.reader_examples))
    # As in the demo: bfloat16 answers where the hardware computes them natively (training is float32).
    answering = local_lm(reader, dtype=resolve_dtype("auto"))
    return ExampleData(task=split.task, fit=fit, val=val, test=test, reader=answering)
