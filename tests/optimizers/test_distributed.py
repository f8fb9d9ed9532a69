"""Launches of 2 processes (torchrun and accelerate launch, gloo on CPU, loopback) against the
one-process reference: the Trainer reaches the same weights, and sharded feedback the same rows,
also after a crash or a ``kill -9`` of any rank and a resume with another process count."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from optimizers.feedback import FeedbackCache
from tests.conftest import REPO_ROOT
from tests.optimizers import distributed_worker as worker

# Float32 gradients are summed in another order (two partial sums instead of one running sum),
# so weights agree to rounding, not bit for bit; measured: 4.2e-7 at most (weights up to 0.99)
# after 12 Adam steps.
TOLERANCE = 1e-5


def launch(processes: int, *args: str, launcher: str = "torchrun") -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node N`` or ``accelerate launch --multi_gpu --num_processes N``
    running ``-m tests.optimizers.distributed_worker ARGS``."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    if launcher == "torchrun":
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
        ]
    else:
        accelerate = str(Path(sys.executable).with_name("accelerate"))
        # --multi_gpu is Accelerate's torchrun launcher, gloo where there is no GPU; its --cpu
        # launches one process unless MPI is set up.
        command = [accelerate, "launch", "--multi_gpu", f"--num_processes={processes}", "--num_machines=1",
                   "--mixed_precision=no", "--dynamo_backend=no",
                   f"--main_process_port={free_port()}"]  # fmt: skip
    return subprocess.run(
        [*command, "-m", "tests.optimizers.distributed_worker", *map(str, args)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def finished(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def read(path):
    return json.loads(path.read_text())


def assert_close(a: list[float], b: list[float]) -> None:
    assert len(a) == len(b)
    assert max(abs(x - y) for x, y in zip(a, b)) <= TOLERANCE


@pytest.mark.slow  # 15 s on 2 idle cores (65 s busy): accelerate launch, torchrun and one python run
def test_two_processes_train_the_weights_of_one_and_resume_with_any_count(tmp_path):
    reference = worker.train(tmp_path / "one")  # this process: a launch of one

    finished(launch(2, "train", tmp_path / "two", launcher="accelerate"))
    two = tmp_path / "two"
    assert_close(read(two / "final-rank-0.json"), reference)
    assert read(two / "final-rank-1.json") == read(two / "final-rank-0.json")  # ranks hold one model
    assert [p.name for p in (two / "best").iterdir()] == ["saved-by-rank-0"]  # only main writes
    assert len(read(two / "history.json")) == 4 and (two / "curves.png").exists()
    history_one = read(tmp_path / "one" / "history.json")
    for row_one, row_two in zip(history_one, read(two / "history.json")):
        assert row_two["step"] == row_one["step"]
        assert row_two.get("train_loss", 0.0) == pytest.approx(row_one.get("train_loss", 0.0), abs=1e-5)

    # Rank 1 fails in epoch 2 (its 11th micro-batch); the run goes on in one process.
    crashed = launch(2, "train", tmp_path / "resumed", "--rank", "1", "--after", "10")
    assert crashed.returncode != 0 and (tmp_path / "resumed" / "state" / "trainer.json").exists()
    progress = read(tmp_path / "resumed" / "state" / "trainer.json")["progress"]
    assert 0 < progress["step"] < 12
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "tests.optimizers.distributed_worker", "train", tmp_path / "resumed"]
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=600)
    assert_close(read(tmp_path / "resumed" / "final-rank-0.json"), reference)


@pytest.mark.slow  # 6 s each on 2 idle cores (31 s busy): two launches
@pytest.mark.parametrize(("killed", "resumed_by"), [(1, 2), (0, 1)], ids=["worker-killed", "main-killed"])
def test_sharded_feedback_survives_a_kill_9_and_gives_the_rows_of_one_process(tmp_path, killed, resumed_by):
    """Either rank, the main one (which merges) included, dies by ``kill -9``; the next launch, of
    the same or another size, asks only what no process committed."""
    reference = worker.feedback(tmp_path / "one")
    total = worker.FEEDBACK_EXAMPLES * worker.FEEDBACK_CANDIDATES

    run = tmp_path / "two"
    dead = launch(2, "feedback", run, "--rank", killed, "--after", "5")  # dies in its 3rd batch of 2
    assert dead.returncode != 0
    cache = run / "feedback.sqlite"
    shards = FeedbackCache(cache).shards()
    assert cache.with_name(f"feedback.sqlite.shard-{killed}") in shards
    committed = sum(len(FeedbackCache(shard)) for shard in shards) + len(FeedbackCache(cache))
    assert 4 <= committed < total  # the killed rank's two committed batches at least
    calls_before = {p.name: len(p.read_text().splitlines()) for p in run.glob("calls-rank-*.log")}

    finished(launch(resumed_by, "feedback", run))
    calls_after = {p.name: len(p.read_text().splitlines()) for p in run.glob("calls-rank-*.log")}
    resumed_calls = sum(calls_after.values()) - sum(calls_before.values())
    assert resumed_calls == total - committed  # nothing committed by either rank was asked again
    assert all(read(run / f"rows-rank-{rank}.json") == reference for rank in range(resumed_by))
    assert FeedbackCache(cache).shards() == [] and len(FeedbackCache(cache)) == total


def test_leftover_shards_are_merged_whole_and_removed(tmp_path):
    cache = FeedbackCache(tmp_path / "feedback.sqlite")
    cache.put_many({"a": {"output": "1"}})
    for rank, rows in ((0, {"b": {"output": "2"}}), (3, {"c": {"output": "3"}, "a": {"output": "1"}})):
        shard = FeedbackCache(cache.shard(rank))
        shard.put_many(rows)
        shard.close()
    cache.shard(5).write_bytes(b"")  # a rank killed before it created its table
    assert len(cache.shards()) == 3
    assert cache.merge_shards() == 3
    assert cache.shards() == [] and len(cache) == 3
    expected = {key: {"output": value} for key, value in zip("abc", "123")}
    assert cache.get_many(["a", "b", "c"]) == expected


def test_mixed_precision_is_the_config_choice_else_the_environment_else_the_hardware(monkeypatch):
    from optimizers import distributed
    from optimizers.training import TrainingConfig
    from persona_rag.errors import ConfigError

    monkeypatch.delenv("PERSONA_RAG_MIXED_PRECISION", raising=False)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr("persona_rag.lm.loading.native_bfloat16", lambda device=None: device == "cpu")
    assert distributed.mixed_precision("cpu") == "bf16"  # a CPU that computes bfloat16 natively
    monkeypatch.setattr("persona_rag.lm.loading.native_bfloat16", lambda device=None: False)
    assert distributed.mixed_precision("cpu") == "no"  # emulated bfloat16 is slower than float32
    monkeypatch.setenv("PERSONA_RAG_MIXED_PRECISION", "bf16")
    assert distributed.mixed_precision("cpu") == "bf16"
    assert distributed.mixed_precision("cpu", "no") == "no"  # the config's explicit choice wins
    with distributed.autocast("cpu", "bf16") as precision:
        assert precision == "bf16" and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")
    with pytest.raises(ConfigError, match="mixed_precision='fp16'"):
        TrainingConfig(mixed_precision="fp16")
