"""optimizers.training.state: the resume state, streamed to its file, never unpickled, and refused
for a different run until overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from persona_rag.errors import StateError
from tests.optimizers.training.problem import make_problem, trainer_for


def test_resume_state_is_written_without_a_copy_in_memory(tmp_path):
    """The resume state (weights and two Adam moments) used to be serialised into a buffer and
    copied out of it: at the reader's fine-tune that was 1.5 GB more peak memory than training
    itself. Streamed to the file, Python holds next to none of it."""
    import tracemalloc

    items, _ = make_problem()
    model = torch.nn.Linear(2048, 1024, bias=False)  # 8 MiB of weights: a 24 MiB state with Adam's
    trainer, _ = trainer_for(model, items, tmp_path)
    trainer._run = {"test": True}
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 2048)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    state_bytes = 3 * model.weight.numel() * 4
    tracemalloc.start()
    try:
        trainer._save_state(optimizer, scheduler, {"epoch": 1})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "state" / "trainer.pt").stat().st_size > state_bytes
    assert peak < state_bytes / 4, (
        f"{peak / 2**20:.1f} MiB held while writing a {state_bytes / 2**20:.0f} MiB state"
    )


def test_a_different_run_in_the_same_folder_is_refused_until_overwrite(tmp_path):
    items, model = make_problem()
    trainer_for(model, items, tmp_path, epochs=2)[0].fit(items)
    for overrides, differs in (
        ({"learning_rate": 0.1}, "config.learning_rate"),
        ({"output_dir": tmp_path, "progress": True}, None),  # run-only fields: the same run, resumed
    ):
        _, other = make_problem()
        trainer, _ = trainer_for(other, items, tmp_path, epochs=2, **overrides)
        if differs:
            with pytest.raises(
                StateError, match=rf"state/trainer\.json: .*differs in {differs}.*--overwrite"
            ):
                trainer.fit(items)
        else:
            trainer.loss_fn = None  # nothing left to train: a loss call would fail
            assert len(trainer.fit(items).history) == 3
            # A finished run keeps its progress, not the weights and Adam moments nothing will read.
            assert not (tmp_path / "state" / "trainer.pt").exists()
    _, other = make_problem()
    with pytest.raises(StateError, match="differs in data"):
        trainer_for(other, items[:32], tmp_path, epochs=2)[0].fit(items[:32])
    trainer, _ = trainer_for(other, items, tmp_path, epochs=2)
    trainer.base = "another base model"
    with pytest.raises(StateError, match="differs in base"):
        trainer.fit(items)

    fresh, _ = trainer_for(other, items, tmp_path, epochs=2, learning_rate=0.1, resume=False)
    result = fresh.fit(items)  # --overwrite: starts again and replaces the state
    assert [row["epoch"] for row in result.history] == [0, 1, 2]
    state = json.loads((tmp_path / "state" / "trainer.json").read_text())
    assert state["run"]["config"]["learning_rate"] == 0.1


class Payload:
    """Unpickling this runs ``Path.write_text(marker, "ran")``: a stand-in for ``os.system``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "ran"))


@pytest.mark.parametrize("layout", ["pickle alone (old layout)", "pickle beside a valid trainer.json"])
def test_a_crafted_pickle_is_never_unpickled_on_resume(tmp_path, layout):
    proof = tmp_path / "proof"
    function, arguments = Payload(proof).__reduce__()  # what unpickling the payload would call
    function(*arguments)
    assert proof.exists()  # the payload is live: unpickling it would run code

    items, model = make_problem()
    out = tmp_path / "run"
    trainer_for(model, items, out, epochs=1)[0].fit(items)
    if layout.startswith("pickle alone"):
        (out / "state" / "trainer.json").unlink()
    marker = tmp_path / "pwned"
    torch.save({"model": Payload(marker)}, out / "state" / "trainer.pt")
    _, fresh = make_problem()
    with pytest.raises(StateError, match=r"state/trainer\.(pt|json): .*never (loaded|unpickled)"):
        trainer_for(fresh, items, out, epochs=1)[0].fit(items)
    assert not marker.exists()
