"""docs/method.md stays true to the code: every function it names exists where it says, and no
source file cites a spec that is not in the repository."""

from __future__ import annotations

import ast
import re

from tests.conftest import REPO_ROOT

METHOD = REPO_ROOT / "docs" / "method.md"


def defined_names(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                methods = [item.name for item in node.body if isinstance(item, ast.FunctionDef)]
                names |= {f"{node.name}.{method}" for method in methods}
        elif isinstance(node, ast.Assign):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    return names


def test_every_function_the_method_page_places_is_defined_there():
    placed = re.findall(r"`([\w/]+\.py): ([\w.]+)`", METHOD.read_text(encoding="utf-8"))
    assert len(placed) >= 6
    missing = [f"{path}: {name}" for path, name in placed if name not in defined_names(REPO_ROOT / path)]
    assert missing == []


def test_no_source_cites_a_file_outside_the_repository():
    cited = [
        str(path.relative_to(REPO_ROOT))
        for folder in ("persona_rag", "optimizers", "benchmarks", "examples", "tests")
        for path in (REPO_ROOT / folder).rglob("*.py")
        if "PAPER" + ".md" in path.read_text(encoding="utf-8")
    ]
    assert cited == []
