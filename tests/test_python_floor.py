"""The package declares Python >= 3.10: no module imports, when it runs, what 3.10's standard library
lacks (imports for type checkers only, under ``if TYPE_CHECKING:``, are fine)."""

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
# standard-library modules that first appeared in Python 3.11
NEWER_THAN_FLOOR = {"tomllib", "importlib.resources.abc", "wsgiref.types"}


def runtime_imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_no_runtime_import_needs_a_newer_python_than_declared() -> None:
    assert 'requires-python = ">=3.10"' in (ROOT / "pyproject.toml").read_text()
    offenders = {
        str(path.relative_to(ROOT)): sorted(runtime_imports(ast.parse(path.read_text())) & NEWER_THAN_FLOOR)
        for folder in ("ilvm_rl", "envs")
        for path in (ROOT / folder).rglob("*.py")
    }
    assert not {path: names for path, names in offenders.items() if names}


def test_the_check_sees_an_import_outside_type_checking() -> None:
    code = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tomllib\nimport wsgiref.types\n"
    assert runtime_imports(ast.parse(code)) & NEWER_THAN_FLOOR == {"wsgiref.types"}
