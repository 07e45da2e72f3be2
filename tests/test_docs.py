"""The code in docs/ is tested: specs validate against the installed plugins, Python runs (blocks marked
``<!-- test: run -->``) or at least compiles and imports what it names, shell lines name real ``cl``
commands, and the generated spec reference covers every registered component."""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from cl_core import catalogue, cli
from cl_core.errors import SpecError
from cl_core.plugins import PluginHost
from cl_core.spec import loads_spec

DOCS = Path(__file__).parents[1] / "docs"
FENCE = re.compile(r"(?P<mark><!-- test: run -->\n)?^```(?P<lang>[a-z]*)[^\n]*\n(?P<code>.*?)^```$", re.M | re.S)


def _blocks(lang: str) -> list:
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        for i, m in enumerate(FENCE.finditer(page.read_text(encoding="utf-8"))):
            if m.group("lang") == lang:
                out.append(pytest.param(m.group("code"), bool(m.group("mark")),
                                        id=f"{page.relative_to(DOCS)}#{i}"))
    return out


@pytest.fixture(scope="module")
def registry():
    return PluginHost().registry()


def _paths_for(data, root: Path) -> None:
    """Create the files and folders a spec example names, so existence checks pass in a scratch folder."""
    for key, value in data.items() if isinstance(data, dict) else ():
        if isinstance(value, dict):
            _paths_for(value, root)
        elif isinstance(value, str) and key.endswith("_dir"):
            (root / value).mkdir(parents=True, exist_ok=True)
        elif isinstance(value, str) and value.endswith((".jsonl", ".csv", ".tsv", ".json")):
            (root / value).parent.mkdir(parents=True, exist_ok=True)
            (root / value).touch()


@pytest.mark.parametrize(("code", "run"), _blocks("toml"))
def test_toml_blocks_parse_and_specs_validate(code, run, registry, tmp_path, monkeypatch):
    data = tomllib.loads(code)
    if "format" not in data:
        return  # a fragment (pyproject entry points): parsing is the test
    missing = {ref["type"].split(".")[0] for ref in _refs(data)} - {e.plugin for e in registry}
    if missing:
        pytest.skip(f"plugins not installed here: {sorted(missing)}")
    monkeypatch.chdir(tmp_path)
    _paths_for(data, tmp_path)
    try:
        loads_spec(code, registry, source="docs")
    except SpecError as exc:
        pytest.fail(str(exc))


def _refs(data: dict) -> list[dict]:
    refs = [data[k] for k in ("data", "sampler", "scorer", "loss", "decoder") if k in data]
    return refs + list(data.get("encoders", {}).values()) + list(data.get("evaluate", []))


@pytest.mark.parametrize(("code", "run"), _blocks("python"))
def test_python_blocks_compile_import_and_run(code, run, tmp_path, monkeypatch):
    tree = ast.parse(code)
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(body=imports, type_ignores=[]), "<docs imports>", "exec"), {})
    if run:
        from huggingface_hub import constants

        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)  # restored afterwards
        exec(compile(tree, "<docs>", "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize(("code", "run"), _blocks("bash"))
def test_shell_blocks_name_real_cl_commands(code, run):
    import click

    for line in code.splitlines():
        words = shlex.split(line.split(" #")[0]) if line.strip() else []
        if len(words) < 2 or words[0] != "cl":
            continue
        command: click.Command = cli.main
        for word in words[1:]:
            if not isinstance(command, click.Group):
                break
            sub = command.get_command(click.Context(command), word)
            assert sub is not None, f"{line!r}: '{word}' is not a subcommand of '{command.name}'"
            command = sub
        assert not isinstance(command, click.Group), f"{line!r} names a group, not a command"


def test_spec_reference_covers_every_component_and_field(registry):
    page = catalogue.reference_page(registry)
    for entry in registry:
        assert f"### `{entry.name}`" in page
        for field in catalogue.fields(entry.info.params):
            assert f"| `{field.name}` |" in page
            assert field.doc, f"{entry.name}.{field.name} has no Attributes: text in its Params docstring"


def test_attribute_docs_parse_google_style():
    doc = """Title.

    Attributes:
        alpha: first line
            continued here.
        beta (int): second.

    Example:
        not: an attribute
    """
    assert catalogue.attribute_docs(doc) == {"alpha": "first line continued here.", "beta": "second."}


def test_plugin_pages_have_a_generated_component_list():
    for name in ("clip", "datasets"):
        assert f"<!-- cl:components {name} -->" in (DOCS / "plugins" / f"{name}.md").read_text()
