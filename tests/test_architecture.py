"""The layers are a contract: `.importlinter` (arrows pointing down, tickets on the bottom layer only,
no cycles between sibling modules), checked here so CI fails when an import breaks it."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_import_contract_holds():
    cli = pytest.importorskip("importlinter.cli", reason="import-linter is in the test extra")
    assert cli.lint_imports(config_filename=str(ROOT / ".importlinter"), no_cache=True) == 0


def test_no_project_imports_hidden_inside_functions():
    """Imports sit at the top of modules, where the contract sees them (lazy imports only for optional
    or heavy third-party dependencies)."""
    import ast

    hidden = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        if path.parts[len(ROOT.parts)] not in ("bench", "tickets", "reports"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.module or "").split(".")[0] in (
                            "bench", "tickets", "reports"):
                        hidden.append(f"{path.relative_to(ROOT)}:{inner.lineno} {inner.module}")
    assert len(hidden) <= MAX_HIDDEN, "\n".join(hidden)


# Project imports inside functions: none (86 before the import contract).
MAX_HIDDEN = 0
