"""``cl plugins new NAME``: write a plugin package that installs, registers components and passes the
contract kit out of the box.

The package is rendered from the template folder ``cl_core/templates/plugin`` (files ending ``.tmpl``,
``string.Template`` placeholders ``$name``, ``$package``, ``$distribution``, ``$core_version``; a path
part ``__package__`` becomes the import package). It registers ``NAME.mlp`` (encoder),
``NAME.margin-nce`` (loss) and ``NAME.pairs`` (example data), with contract tests and an example spec.
"""

from __future__ import annotations

import importlib.metadata as md
import string
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from .errors import ClError
from .plugins import FIRST_PARTY
from .registry import NAME_RE

TEMPLATE_SUFFIX = ".tmpl"

#: What to run in the new package, in order: printed by ``cl plugins new`` and shown by the generated
#: README and docs/plugins/writing.md (a test keeps them equal). ``.[testing]`` brings pytest and the
#: contract kit's needs, which the ``pytest`` step runs on.
NEXT_STEPS = ('pip install -e ".[testing]"', "cl plugins list", "pytest",
              "cl train specs/example.toml --set trainer.epochs=2")


def names(name: str) -> dict[str, str]:
    """Template values for a plugin called ``name`` (entry point ``name``, package ``cl_<name>``).

    Raises:
        ClError: ``name`` is not lowercase letters, digits and hyphens, or is reserved.
    """
    if not NAME_RE.match(f"{name}.x") or name.endswith("-"):
        raise ClError(f"plugin name {name!r} must be lowercase letters, digits and hyphens, starting with a "
                      "letter or digit (it prefixes every component name: '<name>.encoder')")
    if name == "core" or name in FIRST_PARTY:
        raise ClError(f"plugin name {name!r} is taken by {'cl-core' if name == 'core' else FIRST_PARTY[name]}")
    try:
        core_version = md.version("cl-core")
    except md.PackageNotFoundError:  # pragma: no cover - running from a source tree
        core_version = "0.1.0"
    return {"name": name, "package": "cl_" + name.replace("-", "_"), "distribution": f"cl-{name}",
            "core_version": core_version}


def _walk(node: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Traversable]]:
    out = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            out += _walk(child, (*prefix, child.name))
        elif child.name.endswith(TEMPLATE_SUFFIX):
            out.append(((*prefix, child.name[: -len(TEMPLATE_SUFFIX)]), child))
    return out


def new_plugin(name: str, parent: str | Path = ".") -> Path:
    """Write the plugin package ``<parent>/<name>`` and return its folder.

    Raises:
        ClError: a bad or reserved name, or the folder exists and is not empty.
    """
    values = names(name)
    target = Path(parent) / name
    if target.exists() and any(target.iterdir()):
        raise ClError(f"{target} already exists and is not empty; choose another --dir or name")
    template = resources.files("cl_core") / "templates" / "plugin"
    for parts, source in _walk(template):
        path = target.joinpath(*(values["package"] if p == "__package__" else p for p in parts))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(string.Template(source.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
    return target
