"""Multi-environment testing for cl-core and its first-party plugins (sessions read registry.toml).

    nox -l                    list sessions
    nox -s core               cl-core alone (toy plugin only), on every Python that has a torch wheel
    nox -s "plugin(clip)"     cl-core + one plugin in its own environment
    nox -s together           every plugin co-installed: registry agreement, tiny main job, all tests
    nox -s lint               ruff
    nox -s typecheck          mypy over cl_core (config in pyproject.toml)
    nox -s docs               the mkdocs-material site, warnings as errors (--strict), into site/
    nox -s bench              benchmarks/ (off by default)
    nox -s gpu                tests marked gpu (off by default; needs a CUDA machine)

Environments are reused between runs (``reuse_venv``), so repeated runs only reinstall what changed.
Torch is pinned to the CPU build that this project tests with; set TORCH_SPEC to use another.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["core", "plugin", "together", "lint", "typecheck", "docs"]

ROOT = Path(__file__).parent
PLUGINS = tomllib.loads((ROOT / "registry.toml").read_text())["plugin"]
TORCH = os.environ.get("TORCH_SPEC", "torch==2.13.0")
ENV = {"HF_HUB_OFFLINE": "1", "CL_STRICT_PLUGINS": "1"}


def _pytest(session: nox.Session, *paths: str, marks: str = "not gpu") -> None:
    session.run("pytest", "-m", marks, *(session.posargs or paths), env=ENV)


@nox.session(python=["3.11"])
def core(session: nox.Session) -> None:
    """cl-core alone: discovery, specs, trainer, built-ins (plugin-dependent tests skip themselves)."""
    session.install(TORCH)
    session.install("-e", ".[testing]")
    _pytest(session, "tests")


def _first_party_closure(name: str) -> list[str]:
    """The paths of plugin ``name`` and of every first-party plugin it depends on (transitively): they are not on
    PyPI, so the isolated session installs them from the tree, and nothing else of the tree."""
    by_distribution = {m["distribution"]: key for key, m in PLUGINS.items()}
    order: list[str] = []

    def visit(key: str) -> None:
        if key in order:
            return
        project = tomllib.loads((ROOT / PLUGINS[key]["path"] / "pyproject.toml").read_text())["project"]
        for requirement in project.get("dependencies", []):
            dependency = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]
            if dependency in by_distribution:
                visit(by_distribution[dependency])
        order.append(key)

    visit(name)
    return [PLUGINS[key]["path"] for key in order]


@nox.session(python="3.11")
@nox.parametrize("plugin", [nox.param(name, id=name) for name in PLUGINS])
def plugin(session: nox.Session, plugin: str) -> None:
    """One plugin in isolation (with the first-party plugins it declares): proves its declared dependencies are
    enough."""
    meta = PLUGINS[plugin]
    session.install(TORCH)
    session.install("-e", ".[testing]", *[a for path in _first_party_closure(plugin) for a in ("-e", path)])
    session.run("cl", "plugins", "check", meta["distribution"], env=ENV)
    _pytest(session, f"{meta['path']}/tests")


@nox.session(python="3.11")
def together(session: nox.Session) -> None:
    """Every plugin co-installed: no conflicts, registry.toml agrees with reality, whole suite."""
    session.install(TORCH)
    session.install("-e", ".[testing]", *[a for m in PLUGINS.values() for a in ("-e", m["path"])])
    session.run("cl", "plugins", "list", env=ENV)
    _pytest(session, "tests", *[f"{m['path']}/tests" for m in PLUGINS.values()])


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff over the core, plugins, tests and benchmarks."""
    session.install("ruff")
    session.run("ruff", "check", "src", "plugins", "tests", "docs", "noxfile.py", *session.posargs)


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy over the cl_core package (typed public API; see [tool.mypy] for what is checked)."""
    session.install(TORCH)
    session.install("-e", ".[testing]", "mypy")
    session.run("mypy", *session.posargs)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build docs/ with mkdocs-material, warnings as errors. The spec reference and the plugin pages'
    component lists are generated from the registry, so cl-core and every plugin are installed, without
    their heavy dependencies (registrations and Params classes import no torch)."""
    session.install("mkdocs>=1.6", "mkdocs-material>=9.5", "pluggy>=1.5", "attrs>=23.1", "cattrs>=23.2",
                    "tomli-w>=1.0", "platformdirs>=3", "click>=8.1")
    session.install("--no-deps", "-e", ".", *[a for m in PLUGINS.values() for a in ("-e", m["path"])])
    session.run("mkdocs", "build", "--strict", "--site-dir", "site", *session.posargs,
                env={"NO_MKDOCS_2_WARNING": "1", "CL_STRICT_PLUGINS": "1"})


@nox.session(python="3.11", default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (print ratios against references measured in the same run)."""
    session.install(TORCH)
    session.install("-e", ".[testing]", *[a for m in PLUGINS.values() for a in ("-e", m["path"])])
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        session.run("python", str(script), *session.posargs)


@nox.session(python="3.11", default=False)
def gpu(session: nox.Session) -> None:
    """Tests marked gpu, on a CUDA machine (install a CUDA torch: TORCH_SPEC='torch --index-url ...')."""
    session.install(*TORCH.split())
    session.install("-e", ".[testing]", *[a for m in PLUGINS.values() for a in ("-e", m["path"])])
    _pytest(session, "tests", *[f"{m['path']}/tests" for m in PLUGINS.values()], marks="gpu")
