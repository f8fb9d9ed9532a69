"""Every example runs as shipped (on the sample task the project writes) at a tiny size."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.py"))
SHOWS = {  # what each example must print: its effect
    "quickstart.py": "mean Eval",
    "train_ropg.py": "ROPG-RL",
    "rspg_pipeline.py": "RSPG-Post",
    "inside_larger_program.py": "strategy 'w -> p'",
}


def test_every_example_is_tested():
    assert sorted(path.name for path in EXAMPLES) == sorted(SHOWS)


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_runs_tiny(example, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    args = ["--tiny"] if example.name == "quickstart.py" else ["--tiny", "--out", str(tmp_path / "runs")]
    done = subprocess.run(
        [sys.executable, str(example), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert SHOWS[example.name] in done.stdout, done.stdout[-2000:]
