"""`cl plugins new`: the generated package installs into a fresh virtual environment outside the repository,
is discovered through its entry point (not registered in-process), validates and trains from a spec, and
passes its own contract tests there."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

from cl_core import cli
from cl_core.errors import ClError
from cl_core.scaffold import names, new_plugin

NAME = "demo-plugin"


def _venv(path: Path) -> Path:
    """A venv that sees this interpreter's packages (torch, cl-core) through a .pth, and nothing else new.

    ``--system-site-packages`` alone is not enough when the tests run inside a venv (it exposes the base
    interpreter's packages), so the current site directories are added explicitly.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    dirs = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    Path(purelib, "_parent_site.pth").write_text(
        "".join(f"import site; site.addsitedir({d!r})\n" for d in dirs if Path(d).is_dir()))
    return python


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CL_STRICT_PLUGINS": "1", "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    out = subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out


def test_generated_plugin_installs_is_discovered_trains_and_passes_its_contracts(tmp_path):
    result = CliRunner().invoke(cli.main, ["plugins", "new", NAME, "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    plugin = tmp_path / NAME
    assert (plugin / "src" / "cl_demo_plugin" / "plugin.py").is_file()

    python = _venv(tmp_path / "venv")
    install = [str(plugin), "--no-deps", "--no-index", "-q", "--disable-pip-version-check"]
    if importlib.util.find_spec("hatchling") is not None:
        install.append("--no-build-isolation")  # no network: build with the hatchling installed here
    _run(python, "-m", "pip", "install", *install, cwd=tmp_path)

    listing = json.loads(_run(python, "-m", "cl_core", "plugins", "list", "--json", cwd=tmp_path).stdout)
    row = next(r for r in listing if r["entry_point"] == NAME)
    assert row["state"] == "loaded" and row["distribution"] == "cl-demo-plugin"
    assert set(row["components"]) == {f"{NAME}.mlp", f"{NAME}.margin-nce", f"{NAME}.pairs"}
    assert not any(r["entry_point"] == NAME for r in json.loads(
        CliRunner().invoke(cli.main, ["plugins", "list", "--json"]).output)), "installed only in the venv"

    assert "ok" in _run(python, "-m", "cl_core", "spec", "validate", "specs/example.toml", cwd=plugin).stdout
    out = _run(python, "-m", "cl_core", "train", "specs/example.toml", "--set", "trainer.epochs=1",
               "--set", "trainer.progress=false", "--set", f"run.output_dir='{tmp_path / 'runs'}'",
               "--set", "run.name='demo'", cwd=plugin)
    assert "done:" in out.stdout
    assert (tmp_path / "runs" / "demo" / "model.safetensors").is_file()

    tests = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not gpu", cwd=plugin)
    passed = re.search(r"(\d+) passed", tests.stdout)
    assert passed and int(passed.group(1)) >= 25 and "failed" not in tests.stdout, tests.stdout


def test_bad_names_and_existing_folders_are_refused(tmp_path):
    for bad in ("Bad", "with.dot", "core", "clip", "-x", "x-"):
        with pytest.raises(ClError):
            names(bad)
    new_plugin("ok-name", tmp_path)
    with pytest.raises(ClError, match="already exists"):
        new_plugin("ok-name", tmp_path)
    result = CliRunner().invoke(cli.main, ["plugins", "new", "Bad Name", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "must be lowercase" in result.output and "Traceback" not in result.output


def test_next_steps_printed_agree_with_the_generated_readme_and_the_docs(tmp_path):
    from cl_core.scaffold import NEXT_STEPS

    result = CliRunner().invoke(cli.main, ["plugins", "new", NAME, "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    printed = result.output.split("next:\n", 1)[1].splitlines()
    assert printed == [f"  cd {tmp_path / NAME}", *(f"  {step}" for step in NEXT_STEPS)]
    assert '  pip install -e ".[testing]"' in printed  # the testing extra: the pytest step needs it
    readme = (tmp_path / NAME / "README.md").read_text()
    docs = (Path(__file__).resolve().parents[1] / "docs" / "plugins" / "writing.md").read_text()
    for text in (readme, docs):
        commands = [line.split("#")[0].strip() for line in text.splitlines()]
        assert all(step in commands for step in NEXT_STEPS), [s for s in NEXT_STEPS if s not in commands]
