"""The public API: one torch-free module for plugin authors, and plugins that use nothing else of the core."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_cl_core_and_its_api_import_without_torch():
    code = ("import sys, cl_core; from cl_core.api import hookimpl, ComponentInfo, SpecError, folder_or_hub_id; "
            "print(sorted(m for m in ('torch', 'numpy', 'transformers', 'pytest') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves_and_the_package_reaches_them():
    import cl_core
    import cl_core.api as api

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert cl_core.Encoder is api.Encoder and cl_core.from_pretrained is api.from_pretrained
    assert api.Objective.__module__ == "cl_core.components.objective"
    assert api.hf.__name__ == "cl_core.hf"


def _core_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cl_core":
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "cl_core"]
    return found


def test_plugins_import_only_the_public_api():
    offenders = []
    for path in sorted(REPO.glob("plugins/*/src/**/*.py")):
        offenders += [f"{path.relative_to(REPO)}:{line}: {module}" for line, module in _core_imports(path)
                      if module != "cl_core.api"]
    assert not offenders, "plugins must import from cl_core.api only:\n" + "\n".join(offenders)


def test_no_plugin_or_plugin_test_reaches_a_private_core_module():
    offenders = []
    for path in sorted(REPO.glob("plugins/*/**/*.py")):
        offenders += [f"{path.relative_to(REPO)}:{line}: {module}" for line, module in _core_imports(path)
                      if any(part.startswith("_") for part in module.split(".")[1:])]
    assert not offenders, "\n".join(offenders)


def test_the_two_old_import_cycles_are_gone():
    """``_builtin/plugin.py`` <-> ``plugins.py`` and ``components/`` <-> ``pipeline.py`` (type-only imports count)."""
    src = REPO / "src"
    builtin_plugin = _all_imports(src / "cl_core/_builtin/plugin.py")
    assert not any(m == "cl_core.plugins" or m.startswith("cl_core.plugins.") for m in builtin_plugin), builtin_plugin
    for path in (src / "cl_core/components").glob("*.py"):
        assert not any(m.startswith("cl_core.pipeline") for m in _all_imports(path)), path.name


def _all_imports(path: Path) -> set[str]:
    """Every cl_core module ``path`` names in an import, type-only imports included, resolved to absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = path.relative_to(REPO / "src").with_suffix("").parts
    package = parts[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                out.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                out.add(node.module)
    return out
