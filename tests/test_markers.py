"""The fast tier's promise, checked on the tests collected in this run: a test that starts TorchServe (or
the benchmark's LitServe peer), Chromium or PostgreSQL, itself or through a fixture, carries the marker that
`make test-fast` leaves out (tests/conftest.py applies most of them from the fixtures a test uses)."""

from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path

STARTS = {
    # a stack started through scripts.serve is stopped with stop_stack; one that refuses to start is not
    "served": re.compile(r"\b(running_server|local_server|built_server|wait_ready|start_page|stop_stack)\("
                         r"|sys\.executable, \"-m\", \"scripts\.serve\", \"run\"|loadtest\.litserve_app"),
    "browser": re.compile(r"\bsync_playwright\("),
    "database": re.compile(r"\bpostgres\(\)"),
}


@functools.cache
def source(function) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def started(item) -> set[str]:
    """The markers whose kind of server the test's function or one of its fixtures starts."""
    fixtures = [definition.func for definitions in item._fixtureinfo.name2fixturedefs.values() for definition in definitions]
    text = "".join(source(function) for function in [item.function, *fixtures])
    return {marker for marker, pattern in STARTS.items() if pattern.search(text)}


def test_every_test_that_starts_a_server_carries_its_marker(request):
    others = [item for item in request.session.items if item.path != Path(__file__)]  # this module quotes them
    unmarked = [f"{item.nodeid}: {sorted(missing)}" for item in others
                if (missing := {m for m in started(item) if item.get_closest_marker(m) is None})]
    assert not unmarked, "mark these (tests/conftest.py: MARKED_BY_FIXTURE, or pytest.mark.<marker>):\n" + "\n".join(unmarked)


def test_the_patterns_see_each_way_the_suite_starts_one():
    seen = {
        "served": ['with running_server(workdir, run, "detector", "1.0") as server:', 'wait_ready(server, ["broken"], timeout=240)',
                   "finally:\n        stop_stack(run_dir)", '[sys.executable, "-m", "scripts.serve", "run", "--config", str(config)]',
                   'subprocess.Popen([sys.executable, "-m", "loadtest.litserve_app"])'],
        "browser": ["with sync_playwright() as playwright:"],
        "database": ["with postgres() as url:"],
    }
    for marker, lines in seen.items():
        assert all(STARTS[marker].search(line) for line in lines), marker
    starting_nothing = ['build_mar(tiny_checkpoint, "tiny", "1.0")', 'command[:5] == ["python", "-m", "scripts.serve", "run"]',
                        'serve.main(["start", "--snapshot", "--run-dir", str(tmp_path / "run")])  # refused: no snapshot']
    assert not any(pattern.search(line) for pattern in STARTS.values() for line in starting_nothing)
