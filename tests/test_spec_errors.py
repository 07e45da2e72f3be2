"""Bad spec files (case 10): one located error block, non-zero exit, no traceback, nothing written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cl_core import cli
from cl_core.errors import SpecError
from cl_core.spec import dump_spec, load_spec, loads_spec, parse_overrides


@pytest.fixture
def run_cli(toy_host, monkeypatch):
    monkeypatch.setattr(cli, "_host", lambda: toy_host)

    def run(*args: str):
        return CliRunner().invoke(cli.main, list(args))

    return run


def _bad(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


CASES = {
    "unknown component": ('type = "core.clip"', 'type = "core.clipp"', "loss.type: unknown loss 'core.clipp'; did you mean 'core.clip'"),
    "misspelt parameter": ("batch_size = 16", "batch_sise = 16", "sampler.batch_sise: unknown parameter for sampler 'core.in-batch'; did you mean 'batch_size'?"),
    "wrong value type": ("lr = 0.01", 'lr = "fast"', "trainer.lr: expected number, got string 'fast'"),
    "missing table": ('[loss]\ntype = "core.clip"\n', "", "loss: required table missing"),
    "invalid TOML": ("[trainer]", "[trainer", "invalid TOML"),
    "negative batch size": ("batch_size = 16", "batch_size = -4", "sampler.batch_size: must be > 0: -4"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_spec_gives_one_located_error_and_writes_nothing(case, toy_spec, run_cli):
    path, out = toy_spec()
    old, new, expected = CASES[case]
    _bad(path, old, new)
    result = run_cli("train", str(path))
    assert result.exit_code == 1
    assert expected in result.output
    assert f"{path}: 1 problem" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_an_encoder_role_the_data_does_not_give_is_an_error_before_anything_is_written(toy_spec, run_cli):
    path, out = toy_spec()
    _bad(path, "[encoders.b]", "[encoders.c]")  # toy.pairs gives fields "a" and "b"
    result = run_cli("train", str(path))
    assert result.exit_code == 1
    assert "encoders.c: no inputs for encoder role(s) 'c': sampler 'core.in-batch' yields 'a', 'b'" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_all_problems_are_reported_at_once(toy_spec, toy_host):
    path, _ = toy_spec()
    _bad(path, "batch_size = 16", "batch_sise = 16")
    _bad(path, 'type = "core.clip"', 'type = "core.clipp"')
    _bad(path, "epochs = 3", "epochs = 1.5")
    with pytest.raises(SpecError) as info:
        load_spec(path, toy_host.registry())
    paths = [p.path for p in info.value.problems]
    assert paths == ["sampler.batch_sise", "loss.type", "trainer.epochs"]
    assert "expected integer, got float 1.5" in str(info.value)


def test_missing_data_path_is_located(tmp_path):
    pytest.importorskip("cl_datasets")
    from cl_core.plugins import PluginHost

    spec = tmp_path / "s.toml"
    missing = tmp_path / "no-such-folder"
    spec.write_text(f"""
[run]
output_dir = "{tmp_path / 'runs'}"
[data]
type = "datasets.image-caption"
images_dir = "{missing}"
captions = "{tmp_path / 'captions.jsonl'}"
[sampler]
type = "core.in-batch"
[encoders.image]
type = "clip.vit"
[encoders.text]
type = "clip.text-transformer"
[scorer]
type = "core.cosine"
[loss]
type = "core.clip"
""")
    with pytest.raises(SpecError) as info:
        load_spec(spec, PluginHost().registry())
    rendered = str(info.value)
    assert f"data.images_dir: path does not exist: {missing}" in rendered
    assert "data.captions: path does not exist" in rendered
    assert not (tmp_path / "runs").exists()


def test_missing_spec_file(run_cli, tmp_path):
    result = run_cli("spec", "validate", str(tmp_path / "nope.toml"))
    assert result.exit_code == 1 and "spec file not found" in result.output


def test_resolved_spec_round_trips(toy_spec, toy_host):
    path, _ = toy_spec()
    spec = load_spec(path, toy_host.registry())
    text = dump_spec(spec, {"git_sha": "abc"})
    assert "batch_size = 16" in text and "max_logit_scale = 100.0" in text and "git_sha" in text
    again = loads_spec(text, toy_host.registry())
    assert again.sampler == spec.sampler and again.trainer == spec.trainer and again.encoders == spec.encoders


def test_overrides_are_parsed_as_toml(toy_spec, toy_host):
    path, _ = toy_spec()
    spec = load_spec(path, toy_host.registry(),
                     overrides=parse_overrides(["trainer.lr=1e-4", "sampler.no_duplicate_labels=true"]))
    assert spec.trainer.params.lr == 1e-4 and spec.trainer.type == "core.adamw" and spec.sampler.params.no_duplicate_labels is True
    with pytest.raises(SpecError, match="sampler.batch_size: must be > 0"):
        load_spec(path, toy_host.registry(), overrides=parse_overrides(["sampler.batch_size=0"]))


def test_cross_field_check_is_located(toy_spec, toy_host):
    path, _ = toy_spec('')
    with pytest.raises(SpecError, match="scorer: initial logit scale 1/temperature = 1000 exceeds max_logit_scale"):
        load_spec(path, toy_host.registry(), overrides=parse_overrides(["scorer.temperature=0.001"]))


def test_spec_show_resolved_fills_defaults(toy_spec, run_cli):
    path, _ = toy_spec()
    result = run_cli("spec", "show", str(path), "--resolved")
    assert result.exit_code == 0, result.output
    assert "learn_temperature = true" in result.output and "[provenance]" in result.output


def test_spec_show_applies_set_overrides(toy_spec, run_cli):
    path, _ = toy_spec()
    result = run_cli("spec", "show", str(path), "--set", "trainer.lr=0.5")
    assert result.exit_code == 0, result.output
    assert "lr = 0.5" in result.output and "lr = 0.01" not in result.output
