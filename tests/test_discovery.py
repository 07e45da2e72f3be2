"""Plugin discovery: our own entry-point loop, failures recorded, conflicts named, torch-free."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from cl_core.errors import PluginConflictError, PluginError, PluginLoadError, UnknownComponentError
from cl_core.plugins import FIRST_PARTY, PluginHost, hookimpl
from cl_core.registry import ComponentInfo, plural

REPO = Path(__file__).resolve().parents[1]


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_import_list_and_validate_do_not_import_torch(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('[data]\ntype="core.nope"\n[sampler]\ntype="core.in-batch"\n[encoders.a]\ntype="x.y"\n'
                    '[scorer]\ntype="core.cosine"\n[loss]\ntype="core.clip"\n')
    code = textwrap.dedent(f"""
        import sys
        import cl_core
        from cl_core.plugins import PluginHost
        from cl_core.spec import load_spec
        from cl_core.errors import SpecError
        host = PluginHost()
        registry = host.registry()
        try:
            load_spec({str(spec)!r}, registry)
        except SpecError:
            pass
        print("torch" in sys.modules)
    """)
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _fake_distribution(root: Path, name: str, module_source: str) -> None:
    """A minimal installed distribution (dist-info with an entry point) on a path we control."""
    (root / f"{name}_mod.py").write_text(module_source)
    info = root / f"{name}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[cl_core]\n{name} = {name}_mod\n")


def test_plugin_that_raises_on_import_is_listed_as_failed(tmp_path):
    _fake_distribution(tmp_path, "broken", "raise ImportError('needs the moon')\n")
    env = {k: v for k, v in os.environ.items() if k != "CL_STRICT_PLUGINS"}  # the default, lenient host
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    out = subprocess.run(["cl", "plugins", "list"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "broken" in out.stdout and "failed" in out.stdout
    assert "ImportError: needs the moon" in out.stdout
    other = subprocess.run(["cl", "components", "--kind", "scorer"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert other.returncode == 0 and other.stderr.startswith("warning: plugin 'broken'")
    assert "_load_entry_points" not in other.stderr  # no echo of the warnings.warn call's source line
    strict = subprocess.run(["cl", "plugins", "check"], capture_output=True, text=True,
                            env={**env, "CL_STRICT_PLUGINS": "1"}, timeout=120)
    assert strict.returncode == 1
    assert "broken" in strict.stderr and "Traceback" not in strict.stderr
    strict_list = subprocess.run(["cl", "plugins", "list"], capture_output=True, text=True,
                                 env={**env, "CL_STRICT_PLUGINS": "1"}, timeout=120)
    assert strict_list.returncode == 1
    assert "ImportError: needs the moon" in strict_list.stderr and "Traceback" not in strict_list.stderr


def test_lenient_host_warns_and_strict_host_raises(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "broken2", "raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UserWarning, match="broken2.*failed to load.*RuntimeError: boom"):
        host = PluginHost(only=["broken2"])
    status = {s.entry_point: s for s in host.statuses()}["broken2"]
    assert status.state == "failed" and status.error == "RuntimeError: boom"
    with pytest.raises(UnknownComponentError, match="plugin 'broken2'.*failed to load: RuntimeError: boom"):
        host.registry().get("encoder", "broken2.thing")
    with pytest.raises(PluginLoadError, match="broken2"):
        PluginHost(only=["broken2"], strict=True)


class _Dup:
    @staticmethod
    @hookimpl
    def cl_scorers():
        from cl_core._builtin.params import DotParams

        yield ComponentInfo(name="dup.dot", params=DotParams, factory="x:y", summary="s")


def test_duplicate_component_names_name_both_providers():
    host = PluginHost(autoload=False)
    host.register(_Dup, name="dup")
    with pytest.raises(PluginConflictError, match="already registered"):
        host.register(_Dup, name="dup")


class _Unprefixed:
    @staticmethod
    @hookimpl
    def cl_scorers():
        from cl_core._builtin.params import DotParams

        yield ComponentInfo(name="other.dot", params=DotParams, factory="x:y", summary="s")


def test_component_names_must_carry_the_entry_point_prefix():
    host = PluginHost(autoload=False)
    with pytest.warns(UserWarning, match="must be named 'mine.<name>'"):
        host.register(_Unprefixed, name="mine")
    assert {s.entry_point: s.state for s in host.statuses()}["mine"] == "failed"


def test_unknown_component_suggests_and_is_not_a_key_error():
    registry = PluginHost(autoload=False).registry()
    with pytest.raises(UnknownComponentError) as info:
        registry.get("scorer", "core.cosin")
    assert not isinstance(info.value, KeyError)
    assert "did you mean 'core.cosine'" in str(info.value)
    assert any("core.dot" in h for h in info.value.hints)


def test_missing_first_party_plugin_says_what_to_install():
    registry = PluginHost(autoload=False).registry()
    with pytest.raises(UnknownComponentError) as info:
        registry.get("encoder", "imagebind.audio")
    assert "not installed" in str(info.value)
    assert info.value.hints == ("install it with: pip install cl-imagebind",)


def test_registry_toml_agrees_with_entry_points_and_registrations():
    index = tomllib.loads((REPO / "registry.toml").read_text())["plugin"]
    assert {n: m["distribution"] for n, m in index.items()}.items() <= FIRST_PARTY.items()
    host = PluginHost(strict=True)
    installed = {s.entry_point: s for s in host.statuses() if s.state == "loaded"}
    registry = host.registry()
    for name, meta in index.items():
        pyproject = tomllib.loads((REPO / meta["path"] / "pyproject.toml").read_text())
        assert pyproject["project"]["name"] == meta["distribution"]
        assert name in pyproject["project"]["entry-points"]["cl_core"]
        if name not in installed:
            pytest.fail(f"plugin {name} ({meta['distribution']}) is indexed but not installed")
        registered = {e.kind: set() for e in registry.by_plugin(name)}
        for e in registry.by_plugin(name):
            registered[e.kind].add(e.name)
        for kind, names in registered.items():
            assert set(meta.get(plural(kind), [])) == names, \
                f"{name}: registry.toml {plural(kind)} differ from registrations"


def test_a_component_of_another_kind_is_named_as_such():
    registry = PluginHost(autoload=False).registry()
    with pytest.raises(UnknownComponentError) as info:
        registry.get("encoder", "core.in-batch")
    assert str(info.value) == "'core.in-batch' is a sampler, not an encoder"
    assert any("available encoders: " in h and "core.shared" in h for h in info.value.hints)
    with pytest.raises(UnknownComponentError, match="^'core.cosine' is a scorer, not a loss$"):
        registry.get("loss", "core.cosine")


def _installed_plugin(root: Path) -> None:
    """Distribution cl-my-plugin with entry point my-plugin (a plugin that registers nothing)."""
    (root / "my_plugin_mod.py").write_text("")
    info = root / "cl_my_plugin-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cl-my-plugin\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[cl_core]\nmy-plugin = my_plugin_mod\n")


def test_plugins_check_refuses_a_name_nothing_installed_has(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cl_core import cli

    _installed_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = CliRunner()
    typo = runner.invoke(cli.main, ["plugins", "check", "my_plugin"])
    assert typo.exit_code == 1
    lines = typo.output.splitlines()
    assert lines[0] == ("error: no installed plugin or distribution 'my_plugin'; did you mean 'my-plugin' or "
                        "'cl-my-plugin'?")
    assert lines[1].startswith("  installed: ") and "my-plugin (cl-my-plugin)" in lines[1]
    assert "core (cl-core)" in lines[1] and len(lines) == 2  # nothing was checked
    for name in ("my-plugin", "cl-my-plugin", "core"):
        ok = runner.invoke(cli.main, ["plugins", "check", name])
        assert ok.exit_code == 0, ok.output
    core = runner.invoke(cli.main, ["plugins", "check", "core"]).output.splitlines()
    assert core and all(line.startswith("ok ") and " core." in line for line in core)


def test_plugins_check_says_how_to_install_a_first_party_plugin():
    host = PluginHost(autoload=False)
    with pytest.raises(PluginError) as info:
        host.check_known(["core", "imagebind", "cl-coca", "nothing-like-it"])
    lines = str(info.value).splitlines()
    assert lines[:3] == ["no installed plugin or distribution 'imagebind'; install it with: pip install cl-imagebind",
                         "no installed plugin or distribution 'cl-coca'; install it with: pip install cl-coca",
                         "no installed plugin or distribution 'nothing-like-it'"]
    assert lines[3] == "  installed: core (cl-core)"


def test_the_cli_prints_cl_warnings_as_one_plain_line(capsys):
    import warnings

    from cl_core import cli
    from cl_core.errors import EvaluationWarning

    with warnings.catch_warnings():  # restores warnings.showwarning afterwards
        warnings.simplefilter("always")
        cli._plain_cl_warnings()
        warnings.warn(EvaluationWarning("zero-shot: split 'test' has no labels or class names; skipped"))
    # one line: no "file.py:110: UserWarning:" prefix and no echo of the warnings.warn source line
    assert capsys.readouterr().err == "warning: zero-shot: split 'test' has no labels or class names; skipped\n"


def test_plugins_list_columns_fit_long_distribution_names(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cl_core import cli

    (tmp_path / "lp_mod.py").write_text("")
    info = tmp_path / "cl_a_rather_long_distribution_name-10.20.30.dev4.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cl-a-rather-long-distribution-name\n"
                                   "Version: 10.20.30.dev4\n")
    (info / "entry_points.txt").write_text("[cl_core]\nlp = lp_mod\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost()
    monkeypatch.setattr(cli, "_host", lambda: host)
    result = CliRunner().invoke(cli.main, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if not line.startswith(" ")]
    assert ["lp", "cl-a-rather-long-distribution-name", "10.20.30.dev4", "loaded"] in rows
    lines = [line for line in result.output.splitlines() if not line.startswith(" ")]
    for column in (1, 2, 3):  # distribution, version and state each start at one offset on every row
        starts = {line.index(" " + row[column] + " " if column < 3 else " " + row[column]) for line, row in
                  zip(lines, rows)}
        assert len(starts) == 1, (column, result.output)


def test_plugins_check_reports_every_broken_plugin_and_factory(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cl_core import cli

    _fake_distribution(tmp_path, "broken_a", "raise ImportError('needs the moon')\n")
    _fake_distribution(tmp_path, "broken_b", "raise RuntimeError('needs the sun')\n")
    _fake_distribution(tmp_path, "badfactory", textwrap.dedent("""
        import attrs
        from cl_core.plugins import hookimpl
        from cl_core.registry import ComponentInfo

        @attrs.frozen
        class P:
            pass

        @hookimpl
        def cl_encoders():
            yield ComponentInfo(name="badfactory.one", params=P, factory="no_such_module_here:build", summary="s")
            yield ComponentInfo(name="badfactory.two", params=P, factory="json:no_such_attr", summary="s")
            yield ComponentInfo(name="badfactory.fine", params=P, factory="json:dumps", summary="s")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(cli.main, ["plugins", "check", "broken_a", "broken_b", "badfactory"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "FAIL  plugin    broken_a (broken_a 0.0.1) failed to load: ImportError: needs the moon" in lines
    assert "FAIL  plugin    broken_b (broken_b 0.0.1) failed to load: RuntimeError: needs the sun" in lines
    assert any(line.startswith("FAIL  encoder   badfactory.one: ModuleNotFoundError") for line in lines)
    assert any(line.startswith("FAIL  encoder   badfactory.two: AttributeError") for line in lines)
    assert "ok    encoder   badfactory.fine" in lines
    assert lines[-1] == "error: 2 plugins failed to load (broken_a, broken_b); 2 components failed to resolve"
    assert "Traceback" not in result.output
