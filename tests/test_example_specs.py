"""Every shipped spec in specs/ validates against the installed plugins (structure only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cl_core.plugins import PluginHost
from cl_core.spec import load_spec

SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.toml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_example_spec_validates(path):
    registry = PluginHost(strict=True).registry()
    prefixes = {ref.split(".")[0] for ref in _types(path)}
    missing = [p for p in prefixes if p != "core" and not registry.by_plugin(p)]
    if missing:
        pytest.skip(f"plugins not installed: {missing}")
    load_spec(path, registry)


def _types(path: Path) -> list[str]:
    import tomllib

    data = tomllib.loads(path.read_text())
    found = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("type"), str):
                found.append(node["type"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    return found


def test_there_is_a_main_job_spec():
    assert any(p.name == "clip-emoji.toml" for p in SPECS)
