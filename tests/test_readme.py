"""Every Python block of the README runs as written, in order, in a fresh directory (sizes shrunk)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# README literal -> tiny literal; each must occur, so the README and this test stay in step.
SHRINK = {
    'make_sample_task("data/sample")': (
        'make_sample_task("data/sample", n_users=3, profile_size=8, questions_per_user=(3, 1, 2))'
    ),
    "limit=12": "limit=3",
    "max_examples=160, epochs=1": "max_examples=6, epochs=1",
    "candidates=8, epochs=2": "candidates=4, epochs=1",
    "epochs=2, learning_rate=1e-4": "epochs=1, learning_rate=1e-4",
}


def readme_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(encoding="utf-8"), re.S)


def test_every_shrink_applies_to_one_block():
    blocks = readme_blocks()
    assert len(blocks) >= 4
    for literal in SHRINK:
        assert sum(literal in block for block in blocks) == 1, literal


@pytest.mark.slow
def test_readme_python_blocks_run_in_order(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    for number, block in enumerate(readme_blocks(), 1):
        for literal, tiny in SHRINK.items():
            block = block.replace(literal, tiny)
        script = tmp_path / f"block{number}.py"
        script.write_text(block, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"README python block {number} failed:\n{block}\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("path", ["README.md", "benchmarks/README.md"])
def test_results_are_named_by_date_and_commit_not_by_a_work_session(path):
    """A reader cannot look up "session 7"; a date and a commit they can."""
    assert re.findall(r"\bsessions?\b", (REPO_ROOT / path).read_text(encoding="utf-8"), re.I) == []


def test_the_demo_table_shown_supports_the_claims_made_of_it():
    """The README's demo table: every personalised row below NoPers on MAE, each tuned row's paired
    test against Dense as printed, and a summary line that names exactly the tuned rows whose test
    says better (the claim the demo makes only where p < 0.05 supports it)."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = re.search(r"```text\nretriever +MAE.*?\n(.*?)```", readme, re.S).group(1).splitlines()
    mae = {
        m.group(1).strip(): float(m.group(2))
        for m in map(re.compile(r"(.+?) +(\d\.\d{4}) ").match, table)
        if m
    }
    personalised = [name for name in mae if name not in ("NoPers", "oracle (best member)")]
    assert len(personalised) == 6 and all(mae[name] < mae["NoPers"] for name in personalised)
    tested = {
        m.group(1): (float(m.group(2)), float(m.group(3)), float(m.group(4)), m.group(6) == "*")
        for m in map(
            re.compile(
                r"(ROPG-KD|RSPG-Post) +([-+]\d\.\d{4}) \[([-+]\d\.\d{4}), ([-+]\d\.\d{4})\] "
                r"(\d\.\d{3})(\*?)$"
            ).match,
            table,
        )
        if m
    }
    assert set(tested) == {"ROPG-KD", "RSPG-Post"}
    for name, (difference, low, high, better) in tested.items():
        assert difference == pytest.approx(mae[name] - mae["Dense"], abs=1e-4) and low <= difference <= high
        assert not better or high < 0  # a row marked better has its interval below zero (MAE)
    claimed = [name for name, (*_, better) in tested.items() if better]
    assert (
        f"better than untuned Dense (paired, p < 0.05): {', '.join(claimed) or 'none'} (lower is better)."
        in table[-1]
    )
