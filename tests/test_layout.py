"""The layout's rules: commands are thin and imported by nobody; the core stays free of TorchServe and
of the tools; the project's names are written once."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import re
from pathlib import Path

import pytest

from scripts.project import MODEL_NAME, ROOT

COMMANDS = sorted(p.stem for p in (ROOT / "scripts").glob("*.py") if p.stem not in ("__init__", "project"))
# Programs that measure (python -m loadtest.<name>): they may hold their measuring code, but nothing imports them.
MEASURING = ("loadtest.bench", "loadtest.faces_bench", "loadtest.soak")
CODE_FOLDERS = ("handler", "scripts", "page", "loadtest")


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def test_every_command_is_argument_parsing_plus_a_call_into_a_library():
    assert len(COMMANDS) >= 10, COMMANDS
    for name in COMMANDS:
        tree = ast.parse((ROOT / "scripts" / f"{name}.py").read_text())
        defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert defined == ["main"], f"scripts/{name}.py defines {defined}: library code belongs in a library module"


def test_no_command_module_is_imported_by_code():
    commands = {f"scripts.{name}" for name in COMMANDS} | set(MEASURING)
    for path in python_files(*CODE_FOLDERS):
        wrong = imported_modules(path) & commands
        assert not wrong, f"{path.relative_to(ROOT)} imports command module(s) {sorted(wrong)}"


def test_the_core_imports_neither_torchserve_nor_the_tools():
    for path in python_files("handler"):
        roots = {module.split(".")[0] for module in imported_modules(path)}
        assert "scripts" not in roots and "page" not in roots and "loadtest" not in roots, path
        if path.name != "ts_handler.py":
            assert "ts" not in roots, f"{path.name} imports TorchServe; only the adapter may"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    module = importlib.import_module(f"scripts.{name}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        module.main(["--help"])
    assert exited.value.code == 0
    assert "usage:" in out.getvalue() and len(out.getvalue()) > 200


def test_the_model_name_is_written_once_outside_tests_and_docs():
    quoted = re.compile(rf"""["']{re.escape(MODEL_NAME)}["']""")
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in python_files(*CODE_FOLDERS)
            for n, line in enumerate(p.read_text().splitlines(), 1) if quoted.search(line)]
    assert hits == ["scripts/project.py:10"], hits
