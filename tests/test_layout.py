"""The repository's layout rules, read from the source with ``ast`` (nothing is imported):

- ``tools/``: the pipeline's steps import one way, models -> data -> build -> train -> export -> evaluate (a step
  imports its own and earlier steps, never a later one); ``tools/experiments`` may import any step and no step imports
  it; no import cycle among tools modules, counting imports inside functions too.
- ``edge/`` (what ships) never imports ``tools`` or ``torch``; ``llama_cpp`` only inside the ``edge/index`` package and
  only inside a function, so it loads when indexing runs and never at start-up.
- The wheel installs ``edge`` only; every ``python -m tools...`` command the Makefile, the README and docs/, CI,
  packaging, tests and the tools' own docstrings name is a module that runs.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STEPS = ("models", "data", "build", "train", "export", "evaluate")
EXPERIMENTS = "experiments"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(package: str) -> dict[str, Path]:
    return {_module_name(path): path for path in sorted((REPO / package).rglob("*.py"))}


def _imports(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    # Imports under a module-level `if`/`try` still run at import time.
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):
            top_level |= {id(child) for child in ast.walk(node)}
    found: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from tools.train import data` imports the submodule tools.train.data
            names = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
        for name in names:
            found.append((name, node.lineno, id(node) in top_level))
    return found


def _tools_graph() -> dict[str, set[tuple[str, int]]]:
    modules = _sources("tools")
    graph: dict[str, set[tuple[str, int]]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imported, line, _ in _imports(path, name):
            # keep the longest prefix that is a tools module: `tools.train.data.Pair` -> tools.train.data
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and imported not in ("tools",):
                graph[name].add((imported, line))
    return graph


def _step(module: str) -> str | None:
    """The pipeline step a tools module belongs to; None for shared top-level modules (``tools.provenance``)."""
    parts = module.split(".")
    if len(parts) >= 2 and (parts[1] in STEPS or parts[1] == EXPERIMENTS):
        return parts[1]
    return None


def test_every_tools_module_belongs_to_a_step() -> None:
    loose = [m for m in _sources("tools") if m != "tools" and _step(m) is None and m.count(".") != 1]
    assert not loose, loose
    # a shared top-level module (tools.provenance) is a leaf: it imports no step
    for module, edges in _tools_graph().items():
        if module != "tools" and _step(module) is None:
            assert not edges, (module, sorted(edges))


def test_steps_import_only_their_own_and_earlier_steps() -> None:
    order = {step: index for index, step in enumerate(STEPS)}
    wrong = []
    for module, edges in _tools_graph().items():
        source = _step(module)
        for imported, line in edges:
            target = _step(imported)
            if target is None or source == EXPERIMENTS:
                continue
            if target == EXPERIMENTS or source is None or order[target] > order[source]:
                wrong.append(f"{module}:{line} imports {imported} ({source} -> {target})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles_among_tools_modules() -> None:
    graph = {module: {target for target, _ in edges} for module, edges in _tools_graph().items()}
    # A package's __init__ is imported before its submodules; an __init__ that imports nothing adds no edge.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_rule_checker_sees_a_backward_import(tmp_path: Path) -> None:
    """The checks above read real imports: a later step imported from an earlier one is found, at any depth."""
    source = tmp_path / "index.py"
    source.write_text("def f():\n    from tools.train.student import load_student\n    from ..evaluate import metrics\n")
    found = _imports(source, "tools.build.index")
    assert ("tools.train.student.load_student", 2, False) in found
    assert ("tools.evaluate.metrics", 3, False) in found


def test_edge_never_imports_tools_or_torch_and_llama_cpp_only_lazily_in_the_index_package() -> None:
    wrong = []
    for module, path in _sources("edge").items():
        for imported, line, at_module_level in _imports(path, module):
            root = imported.split(".")[0]
            if root in ("tools", "torch"):
                wrong.append(f"{module}:{line} imports {imported}")
            elif root == "llama_cpp":
                in_index = module == "edge.index" or module.startswith("edge.index.")
                if not in_index or at_module_level:
                    wrong.append(f"{module}:{line} imports llama_cpp (only lazily, inside the edge.index package)")
    assert not wrong, "\n".join(wrong)


def test_the_wheel_installs_edge_only() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    find = config["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["edge*"], find
    assert not (REPO / "tools" / "__init__.py").read_text(encoding="utf-8").strip().startswith("import")
    scripts = config["project"]["scripts"]
    assert all(target.startswith("edge.") for target in scripts.values()), scripts


def _runnable(module: str) -> bool:
    path = REPO.joinpath(*module.split("."))
    if (path / "__main__.py").is_file():
        return True
    file = path.with_suffix(".py")
    return file.is_file() and '__name__ == "__main__"' in file.read_text(encoding="utf-8")


COMMAND_RE = re.compile(r"-m\s+(tools(?:\.[A-Za-z_]\w*)*)(?![.\w])|\"-m\",\s*\"(tools(?:\.[A-Za-z_]\w*)*)\"")
# A manifest's or report's recorded provenance names the tool that wrote it, then: quoted as such, it is not a command.
RECORDED = re.compile(r'"(command|tool)":')


def test_every_named_tools_command_is_a_module_that_runs() -> None:
    files = [REPO / "Makefile", REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")),
             *sorted((REPO / ".ci").rglob("*")), *sorted((REPO / "packaging").rglob("*.py")),
             *sorted((REPO / "tests").rglob("*.py")), *sorted((REPO / "tools").rglob("*.py"))]
    missing = []
    for path in files:
        if not path.is_file() or path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if RECORDED.search(line) and path.suffix == ".md":
                continue
            for match in COMMAND_RE.finditer(line):
                module = match.group(1) or match.group(2)
                if not _runnable(module):
                    missing.append(f"{path.relative_to(REPO)}:{number}: python -m {module}")
    assert not missing, "\n".join(missing)
