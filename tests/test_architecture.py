"""The import rules of ARCHITECTURE.md, read from the source (AST), so a violation fails here
rather than as an import cycle or a break when a private name changes.

- ``persona_rag`` (inference) never imports ``optimizers`` (training), not even lazily.
- ``persona_rag.store`` depends on ``persona_rag.retrievers``, never the other way round.
- ``optimizers`` uses only public names of other objects: no ``obj._private`` attribute, no
  ``getattr(obj, "_private")``, no ``from persona_rag... import _private``.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# DSPy's own teleprompter protocol: every DSPy optimizer marks the program it returns this way.
DSPY_PROTOCOL = frozenset({"_compiled"})


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(tree: ast.Module) -> list[tuple[int, str]]:
    """Every module an import statement names, wherever it is (top level, function, TYPE_CHECKING)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def imports_of(package: str, prefix: str) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sources(package)
        for line, module in imported_modules(parse(path))
        if module == prefix or module.startswith(f"{prefix}.")
    ]


def private_reach_ins(tree: ast.Module) -> list[tuple[int, str]]:
    """Private names used on objects other than ``self``/``cls``."""

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__") and name not in DSPY_PROTOCOL

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("persona_rag"):
            found += [(node.lineno, f"import {a.name}") for a in node.names if private(a.name)]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and private(node.args[1].value)
        ):
            found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


def test_the_inference_package_never_imports_the_training_package():
    assert sources("persona_rag")
    assert imports_of("persona_rag", "optimizers") == []


def test_retrievers_never_import_the_store_that_imports_them():
    assert imports_of("persona_rag/retrievers", "persona_rag.store") == []
    store = [module for path in sources("persona_rag/store") for _, module in imported_modules(parse(path))]
    assert any(module.startswith("persona_rag.retrievers") for module in store)


def test_the_profile_store_offers_what_retrievers_read_from_it():
    from persona_rag.retrievers import ProfileSource
    from persona_rag.store import ProfileStore

    for name in ("documents", "search"):
        wanted = list(inspect.signature(getattr(ProfileSource, name)).parameters)
        assert list(inspect.signature(getattr(ProfileStore, name)).parameters) == wanted, name
    assert "self.encoder =" in inspect.getsource(ProfileStore.__init__)


@pytest.mark.parametrize("path", sources("optimizers"), ids=lambda p: p.name)
def test_optimizers_use_no_private_name_of_another_object(path):
    assert [f"line {line}: {what}" for line, what in private_reach_ins(parse(path))] == []


def test_the_reach_in_check_sees_each_kind_of_reach_in():
    code = (
        "from persona_rag.cli import _load_selector\n"
        "program._content_free_prompt(x)\n"
        "getattr(generator, '_stop')\n"
        "self._own = 1\n"
        "outer._compiled = True\n"
        "type(x).__name__\n"
    )
    found = [what for _, what in private_reach_ins(ast.parse(code))]
    assert found == ["import _load_selector", "program._content_free_prompt", "getattr(generator, '_stop')"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(packages: Sequence[str]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports, anywhere in its source (lazily too: a lazy
    import that closes a cycle is still a cycle, only one that fails later)."""
    modules = {module_name(path): path for package in packages for path in sources(package)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # ``from a.b import c`` names module ``a.b`` and, when it is a module, ``a.b.c``.
        graph[name] = {module for _, module in imported_modules(parse(path)) if module in modules} - {name}
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or through others (the strongly
    connected components of more than one module; Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def test_the_cycle_finder_sees_a_cycle_through_three_modules():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_through_others():
    """A package's ``__init__`` re-exports from its modules, so an import of the package from one of
    its modules is not counted: only module-to-module edges are."""
    graph = import_graph(["persona_rag", "optimizers"])
    assert "persona_rag.lm.local" in graph
    packages = {name for name in graph if (ROOT / name.replace(".", "/") / "__init__.py").exists()}
    modules_only = {name: targets - packages for name, targets in graph.items() if name not in packages}
    assert cycles(modules_only) == []


def test_architecture_md_names_every_module():
    """A module the map leaves out is one a new engineer cannot place (by file name, as the map's
    package rows list their files)."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = [
        str(path.relative_to(ROOT))
        for package in ("persona_rag", "optimizers")
        for path in sources(package)
        if f"`{path.name}`" not in text
    ]
    assert missing == []
