"""The layout's rules, checked on the whole import graph: commands are thin and imported by nobody; the
core stays free of TorchServe and of everything around it; imports run one way (core <- libraries <-
commands, page, loadtest; tests beside them) with no circles; the project's names are written once."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import re
from pathlib import Path

import pytest

from deepfake_service.project import MODEL_NAME, ROOT

FOLDERS = ("handler", "deepfake_service", "scripts", "page", "loadtest", "tests")
COMMANDS = sorted(p.stem for p in (ROOT / "scripts").glob("*.py") if p.stem != "__init__")
# Programs that measure (python -m loadtest.<name>): they may hold their measuring code, but nothing imports them.
MEASURING = ("loadtest.bench", "loadtest.faces_bench", "loadtest.soak", "loadtest.video_bench", "loadtest.provenance_bench",
             "loadtest.records_bench", "loadtest.scan_bench")
# What each top-level folder may import from the project (itself included); tests may import anything.
ALLOWED = {
    "handler": {"handler"},
    "deepfake_service": {"handler", "deepfake_service"},
    "page": {"handler", "deepfake_service", "page"},
    "loadtest": {"handler", "deepfake_service", "loadtest"},
    "scripts": {"handler", "deepfake_service", "page", "scripts"},
    "tests": set(FOLDERS),
}
# deepfake_service's libraries, lowest first: each may import those before it, never one after it.
LIBRARY_LAYERS = ("project", "ports", "dataset", "samples", "packaging", "records", "serving", "training")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


MODULES = {module_name(p): p for p in python_files(*FOLDERS)}


def imported_modules(path: Path) -> set[str]:
    """The project modules ``path`` imports, anywhere in it (a lazy import inside a function counts)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in MODULES}


GRAPH = {name: imported_modules(path) for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_graph(prefix: str) -> dict[str, set[str]]:
    """The graph folded to the sub-packages (or modules) directly under ``prefix``."""
    def part(name: str) -> str | None:
        rest = name[len(prefix) + 1:] if name.startswith(prefix + ".") else None
        return rest.split(".")[0] if rest else None

    folded: dict[str, set[str]] = {}
    for source, targets in GRAPH.items():
        if part(source):
            folded.setdefault(part(source), set()).update(part(t) for t in targets if part(t) and part(t) != part(source))
    return folded


def test_the_cycle_finder_finds_a_circle_and_nothing_else():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_run_in_a_circle():
    assert cycles(GRAPH) == []


def test_the_libraries_import_each_other_one_way_only():
    assert cycles(package_graph("deepfake_service")) == []
    assert cycles(package_graph("handler")) == []
    for source, targets in package_graph("deepfake_service").items():
        for target in targets:
            assert LIBRARY_LAYERS.index(target) < LIBRARY_LAYERS.index(source), f"deepfake_service.{source} imports deepfake_service.{target}"


def test_each_folder_imports_only_what_sits_below_it():
    for name, targets in GRAPH.items():
        folder = name.split(".")[0]
        wrong = {t for t in targets if t.split(".")[0] not in ALLOWED[folder]}
        assert not wrong, f"{MODULES[name].relative_to(ROOT)} imports {sorted(wrong)}"


def test_no_test_module_or_conftest_is_imported():
    for name, targets in GRAPH.items():
        wrong = {t for t in targets if t.startswith("tests.") and (t.split(".")[1].startswith("test_") or t == "tests.conftest")}
        assert not wrong, f"{MODULES[name].relative_to(ROOT)} imports {sorted(wrong)}: helpers belong in a helper module"


def test_every_command_is_argument_parsing_plus_a_call_into_a_library():
    assert len(COMMANDS) >= 10, COMMANDS
    for name in COMMANDS:
        tree = ast.parse((ROOT / "scripts" / f"{name}.py").read_text())
        defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert defined == ["main"], f"scripts/{name}.py defines {defined}: library code belongs in a library module"


def test_no_command_or_measuring_program_is_imported_by_code():
    commands = {f"scripts.{name}" for name in COMMANDS} | set(MEASURING)
    for name, targets in GRAPH.items():
        if not name.startswith("tests."):
            assert not targets & commands, f"{MODULES[name].relative_to(ROOT)} imports {sorted(targets & commands)}"


def test_in_the_core_only_the_adapter_imports_torchserve():
    for path in python_files("handler"):
        tree = ast.parse(path.read_text())
        roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        roots |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        if path.name != "ts_handler.py":
            assert "ts" not in roots, f"{path.relative_to(ROOT)} imports TorchServe; only handler/ts_handler.py may"


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
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in python_files("handler", "deepfake_service", "scripts", "page", "loadtest")
            for n, line in enumerate(p.read_text().splitlines(), 1) if quoted.search(line)]
    assert hits == ["deepfake_service/project.py:10"], hits


HANDLER_MODULE_LINES = 350  # a core module past this holds more than one job: split it by job (docs/layout.md)


def test_no_core_module_outgrows_one_job():
    long = {p.name: n for p in (ROOT / "handler").glob("*.py") if (n := len(p.read_text().splitlines())) > HANDLER_MODULE_LINES}
    assert not long, f"handler modules over {HANDLER_MODULE_LINES} lines: {long}"


def test_the_answer_json_is_built_in_answers_py_alone():
    """Outside handler/answers.py no core module writes an answer key: no ``as_dict``/``as_block`` helpers and no
    assignment into an answer by key (the provenance reader's own evidence document aside)."""
    found = []
    for path in sorted((ROOT / "handler").glob("*.py")):
        if path.name in ("answers.py", "provenance.py"):
            continue
        text = path.read_text()
        found += [f"{path.name}: {m.group(0)}" for m in re.finditer(r"def (as_dict|as_block|block|to_json)\(|\b(reply|answer|built)\[\"\w+\"\] =", text)]
    assert not found, found
