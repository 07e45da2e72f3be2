"""Every shipped spec in specs/ validates against the installed plugins (structure only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cl_core.plugins import PluginHost
from cl_core.spec import load_spec

SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.toml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_example_spec_validates(path, tmp_path, monkeypatch):
    registry = PluginHost(strict=True).registry()
    prefixes = {ref.split(".")[0] for ref in _types(path)}
    missing = [p for p in prefixes if p != "core" and not registry.by_plugin(p)]
    if missing:
        pytest.skip(f"plugins not installed: {missing}")
    # the decoder specs name earlier runs by glob (runs/clip-emoji-*): give each a finished stand-in run in a
    # scratch working directory, as a machine that has trained the CLIP and LM jobs has
    monkeypatch.chdir(tmp_path)
    for pattern in _run_patterns(path):
        stand_in = tmp_path / pattern.replace("*", "stand-in")
        stand_in.mkdir(parents=True, exist_ok=True)
        (stand_in / "model.safetensors").write_bytes(b"")
    load_spec(path, registry)


def test_a_decoder_spec_without_its_runs_says_which_to_train(tmp_path, monkeypatch):
    from cl_core.errors import SpecError

    path = next(p for p in SPECS if p.name == "decap-emoji.toml")
    registry = PluginHost(strict=True).registry()
    if not registry.by_plugin("decap"):
        pytest.skip("cl-decap not installed")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match=r"no finished run matches 'runs/clip-emoji-\*'.*train one first"):
        load_spec(path, registry)


def _nodes(node):
    """Every table and value of a parsed spec, depth first."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _nodes(child)


def _parsed(path: Path):
    import tomllib

    return tomllib.loads(path.read_text())


def _run_patterns(path: Path) -> list[str]:
    from cl_core.spec.validators import is_run_pattern

    return [n for n in _nodes(_parsed(path)) if isinstance(n, str) and "/" in n and is_run_pattern(n)]


def _types(path: Path) -> list[str]:
    return [n["type"] for n in _nodes(_parsed(path)) if isinstance(n, dict) and isinstance(n.get("type"), str)]


def test_there_is_a_main_job_spec():
    assert any(p.name == "clip-emoji.toml" for p in SPECS)
