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
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimizers.demo.config import POOL, ROW_NAMES, DemoConfig
from optimizers.demo.data import carved_splits, write_sample_task
from optimizers.demo.pool import pool_results
from optimizers.demo.reader import finetune_reader
from optimizers.demo.stages import encoder_key, examples_key, run_stage, stage_key, timed
from optimizers.plots import bar_chart
from persona_rag.cli_options import add_model_options, build_program, load_selector, make_console
from persona_rag.config_flags import ConfigFlags
from persona_rag.defaults import DEFAULT_LM
from persona_rag.fingerprint import directory_fingerprint

__all__ = ["FLAGS", "DemoResult", "add_demo", "run_demo"]

FLAGS = ConfigFlags(DemoConfig, include=("out", "seed"))
"""The demo's settings that are flags; its sizes are the full demo's, or with ``--tiny`` the toy
run's (:meth:`DemoConfig.tiny`)."""


@dataclass
class DemoResult:
    """What the demo wrote: its rows (``EvaluationResult``s, in table order) and the files."""

    results: list[Any]
    summary: str
    json_path: Path
    chart_path: Path


def _store_program(args: argparse.Namespace, task: Any, out: Path, test: list[Any]) -> tuple[Any, list]:
    """Dense retrieval served by an embedded Chroma store that holds each user's whole history (the
    union of their test questions' profiles), and the test questions by user id, each limited to
    its own profile's items (``profile_ids``): the store row sees exactly the items the Dense row
    sees, and no question sees its own or a later answer."""
    import shutil

    from persona_rag.store import ProfileStore

    shutil.rmtree(out / "store", ignore_errors=True)
    store = ProfileStore(out / "store", task=task, encoder=args.encoder)
    history: dict[str, dict[str, Any]] = {}
    for example in test:
        history.setdefault(example.user_id, {}).update({str(item["id"]): item for item in example.profile})
    store.add_many((user, list(items.values())) for user, items in history.items())
    by_user = [
        ex.copy(profile=None, profile_ids=[str(item["id"]) for item in ex.profile]) for ex in test
    ]  # fmt: skip
    return build_program(args, task, "dense", store), by_user


TUNED = ("ropg-kd", "rspg-post")
"""The rows the demo's claim is about: each is tested against untuned Dense on the same questions."""


def _summary(rows: dict[str, Any], metric: str, lower: bool, against_dense: dict[str, Any]) -> str:
    """One line saying what the table shows, computed from its numbers: every personalised row
    against NoPers, and the tuned rows against untuned Dense only where the paired test supports
    it (p < 0.05), so the claim holds beyond the noise of the test questions."""

    def better(a: str, b: str) -> bool:
        x, y = rows[a].metrics[metric], rows[b].metrics[metric]
        return x < y if lower else x > y

    personalised = [name for name in rows if name != "none" and not name.startswith("oracle")]
    beat_nopers = [ROW_NAMES[n] for n in personalised if better(n, "none")]
    tuned = [ROW_NAMES[n] for n in TUNED if against_dense[ROW_NAMES[n]][metric]["better"]]
    return (
        f"{len(beat_nopers)} of {len(personalised)} personalised rows beat NoPers on {metric}; "
        f"better than untuned Dense (paired, p < 0.05): {', '.join(tuned) or 'none'} "
        f"({'lower' if lower else 'higher'} is better)."
    )


def _chart(results: Sequence[Any], metric: str, title: str, *, lower: bool) -> bytes:
    """A bar per row for ``metric``, the oracle drawn as a dashed line (PNG bytes)."""
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


def run_demo(args: argparse.Namespace, config: DemoConfig) -> DemoResult:
    """Run the demo's stages (see the module docstring) with the model options in ``args``."""
    from optimizers.ropg import ROPG_KD, ROPGKDConfig
    from optimizers.rspg import RSPG, RSPGConfig
    from persona_rag.evaluation import (
        compare_rows,
        comparison_table,
        evaluate_program,
        pool_bounds,
        results_table,
        write_results,
    )
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
    data = write_sample_task(config)
    task, fit, val, test = carved_splits(data)
    console.print(
        f"sample task in {data}: {len(fit)} training and {len(val)} validation questions (from the train "
        f"split), {len(test)} held-out test questions, {config.users} users"
    )

    if args.lm:
        console.print(f"reader: {args.lm} as served (the reader fine-tune step applies to local models only)")
        reader_key = stage_key(args.lm, args.api_base)
    else:
        with timed(stage_seconds, "reader"):
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
        reader_key = stage_key(directory_fingerprint(best), precision)

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
    ropg_key = stage_key(
        reader_key, examples_key(fit), ropg_config.identity(), encoder_key(args.encoder), args.k
    )
    with timed(stage_seconds, "ROPG-KD"):
        dense = build_program(args, task, "dense")  # loads the reader: part of this stage's cost
        if run_stage(
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

    untrained = Selector(pool=pool, mode="post")

    def select() -> None:
        student = build_program(args, task, "none")
        student.selector = untrained
        trained = RSPG(config=rspg_config).compile(student, trainset=fit, valset=val)
        write_portable_json(selector_file, trained.selector.dump_state(), root=out)

    rspg_key = stage_key(
        ropg_key,
        directory_fingerprint(Path(ropg_config.output_dir) / "best"),
        rspg_config.identity(),
        repr(untrained),  # its pool, mode, encoder and whether it reads member names
    )
    with timed(stage_seconds, "RSPG-Post"):
        if run_stage(Path(rspg_config.output_dir), rspg_key, select):
            console.print("RSPG-Post: trained the selector over the pool")

    with timed(stage_seconds, "test answers"):
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
    against_dense = compare_rows(
        task, test, [rows[n] for n in ("dense", *TUNED)], ROW_NAMES["dense"], seed=config.seed
    )
    summary = _summary(rows, metric, task.lower_is_better, against_dense)
    console.print(results_table(results, title=title))
    console.print(
        comparison_table({name: {metric: tested[metric]} for name, tested in against_dense.items()}, "Dense")
    )
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
        against_dense=against_dense,
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
    """``persona-rag demo``: the full demo, or every stage at toy size with ``--tiny``."""
    settings = FLAGS.values(DemoConfig, args)
    run_demo(args, DemoConfig.tiny(**settings) if args.tiny else DemoConfig(**settings))
    return 0


def add_demo(commands: Any) -> None:
    """Register ``persona-rag demo``."""
    demo = commands.add_parser(
        "demo",
        help="the paper's result on a generated sample task: fine-tuned reader, fixed retrievers, "
        "ROPG-KD and RSPG-Post on held-out questions",
    )
    FLAGS.add_to(demo)
    demo.add_argument(
        "--tiny", action="store_true", help="every stage at toy size (seconds; numbers meaningless)"
    )
    add_model_options(demo)
    # bfloat16 where the hardware computes it natively: 2.8x faster label scoring on this project's
    # CPUs, which is most of the demo's time (benchmarks/README.md). Two items per prompt: on the
    # sample task one item of the asked movie's genre says most of what the profile can, and
    # shorter prompts are cheaper to fine-tune on and to answer.
    demo.set_defaults(func=cmd_demo, dtype="auto", k=2)
