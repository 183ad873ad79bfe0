"""The handler's own counters are named alike where config names them and where the handler emits them."""

from __future__ import annotations

import ast
import re

import yaml

from deepfake_service.project import CONFIG_DIR, CONFIG_PROPERTIES, HANDLER_PACKAGE


def emitted_counters() -> set[str]:
    """Every literal name passed to ``add_counter`` anywhere in handler/ (read from the source, so the
    function that emits them may move between modules)."""
    names = set()
    for path in HANDLER_PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_counter"
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names.add(node.args[0].value)
    return names


def configured_counters() -> set[str]:
    """The names on config.properties' ``# counters:`` line."""
    (listed,) = re.findall(r"^# counters: (.+)$", CONFIG_PROPERTIES.read_text(), re.MULTILINE)
    return {name.strip() for name in listed.split(",")}


def test_the_counters_config_names_are_the_ones_the_handler_emits():
    emitted = emitted_counters()
    assert emitted, 'no add_counter("...") call found in handler/'
    assert configured_counters() == emitted
    metrics = CONFIG_DIR / "metrics.yaml"  # none today: model_metrics_auto_detect lets the counters through
    if metrics.exists():
        declared = yaml.safe_load(metrics.read_text()).get("model_metrics", {}).get("counter", [])
        assert {entry["name"] for entry in declared} == emitted
