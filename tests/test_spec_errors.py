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
    "wrong value type": ("lr = 0.01", 'lr = "fast"', 'trainer.lr: expected number, got string "fast"'),
    "missing table": ('[loss]\ntype = "core.clip"\n', "", "loss: nothing to train: the spec has no [loss] and no [[objective]]"),
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
    assert "encoders.c: no inputs for role(s) 'c': sampler 'core.in-batch' yields 'a', 'b'" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_caption_target_the_data_does_not_give_is_located_at_its_objective(toy_spec, run_cli):
    path, out = toy_spec()
    text = path.read_text()
    path.write_text(text + '\n[decoder]\ntype = "toy.char-decoder"\n\n[[objective]]\ntype = "core.contrastive"\n'
                           'roles = ["a", "b"]\n\n[[objective]]\ntype = "core.caption"\ncondition = "a"\n'
                           'target = "caption"\n')
    result = run_cli("train", str(path))
    assert result.exit_code == 1, result.output
    assert "objective[1]: no inputs for role(s) 'caption': sampler 'core.in-batch' yields 'a', 'b'" in result.output
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


TWO_EVALUATORS = '[[evaluate]]\ntype = "toy.alignment"\n[[evaluate]]\ntype = "toy.alignment"\n'


def test_set_reaches_entries_of_arrays_of_tables(toy_spec, toy_host):
    path, _ = toy_spec(TWO_EVALUATORS)
    spec = load_spec(path, toy_host.registry(),
                     overrides=parse_overrides(['evaluate[1].splits=["test"]', 'evaluate.0.splits=["val"]']))
    assert [ref.params.splits for ref in spec.evaluate] == [("val",), ("test",)]
    whole = load_spec(path, toy_host.registry(),
                      overrides=parse_overrides(['evaluate[1]={type = "toy.alignment", splits = []}']))
    assert [ref.params.splits for ref in whole.evaluate] == [("heldout",), ()]


@pytest.mark.parametrize("item,message", [
    ("evaluate[2].splits=[]", "evaluate[2].splits: index 2 is out of range: 'evaluate' has 2 entries "
                              "(indexes 0 to 1)"),
    ("evaluate.7.splits=[]", "evaluate.7.splits: index 7 is out of range"),
    ("evaluate.splits=[]", "evaluate.splits: 'evaluate' is an array with 2 entries (indexes 0 to 1): pick one "
                           "with evaluate[N]"),
    ("trainer[0].lr=1", "trainer[0].lr: 'trainer' is not an array"),
    ("trainer.lr.x=1", "trainer.lr.x: 'trainer.lr' is not a table"),
    ("evaluate[0]splits=1", "evaluate[0]splits: expected a key like trainer.lr or evaluate[0].max_pairs"),
])
def test_set_paths_that_cannot_be_applied_are_named(toy_spec, toy_host, item, message):
    path, _ = toy_spec(TWO_EVALUATORS)
    with pytest.raises(SpecError) as info:
        load_spec(path, toy_host.registry(), overrides=parse_overrides([item]))
    assert info.value.source == "--set"
    assert message in str(info.value)


def test_problems_in_set_values_name_the_set_not_the_file(toy_spec, run_cli):
    path, _ = toy_spec(TWO_EVALUATORS)
    _bad(path, "lr = 0.01", "lr = -1.0")  # a problem in the file itself: no --set hint
    result = run_cli("spec", "show", str(path), "--set", "trainer.epochs=abc", "--set", 'evaluate[1].splits="x"',
                     "--set", 'sampler.batch_size="16"')
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].endswith("run.toml: 4 problems")

    def hint_after(problem: str) -> str:
        return lines[lines.index(problem) + 1]

    assert hint_after('  trainer.epochs: expected integer, got string "abc"') == \
        "      the value comes from --set trainer.epochs=abc"
    assert hint_after('  evaluate[1].splits: expected array of string, got string "x"') == \
        "      the value comes from --set evaluate[1].splits=x"
    # a string that would be an integer bare is shown quoted, as it must be typed to give a string
    assert hint_after('  sampler.batch_size: expected integer, got string "16"') == \
        '      the value comes from --set sampler.batch_size="16"'
    lr = next(i for i, line in enumerate(lines) if line.startswith("  trainer.lr:"))
    assert lr == len(lines) - 1 or not lines[lr + 1].startswith("      the value comes from"), lines


def test_a_cross_field_problem_names_the_set_that_changed_its_table(toy_spec, toy_host):
    path, _ = toy_spec()
    with pytest.raises(SpecError) as info:
        load_spec(path, toy_host.registry(), overrides=parse_overrides(["scorer.temperature=0.001"]))
    problem = info.value.problems[0]
    assert problem.path == "scorer"
    assert problem.hints[0] == "a value in it comes from --set scorer.temperature=0.001"


def test_values_in_spec_errors_are_spelled_as_toml(toy_spec, toy_host):
    path, _ = toy_spec()
    with pytest.raises(SpecError) as info:
        load_spec(path, toy_host.registry(),
                  overrides=parse_overrides(["trainer.epochs=true", "trainer.precision=fp61"]))
    text = str(info.value)
    assert "trainer.epochs: expected integer, got boolean true" in text
    assert ('trainer.precision: expected one of "auto", "fp32", "bf16", "fp16", got string "fp61"; '
            'did you mean "fp16"?') in text
    assert "True" not in text and "'" not in text.split("\n", 1)[1]


def test_components_and_parameter_hints_show_defaults_as_toml(run_cli):
    import attrs

    from cl_core.spec.structure import param_signature

    @attrs.frozen(kw_only=True)
    class Params:
        name: str | None = None
        ids: tuple[int, ...] = ()
        betas: tuple[float, float] = (0.9, 0.98)
        flag: bool = True
        mode: str = "auto"
        size: int = attrs.field()

    assert param_signature(Params) == ('name: string = (not set), ids: array of integer = [], betas: array of '
                                       'number = [0.9, 0.98], flag: boolean = true, mode: string = "auto", '
                                       'size: integer = required')
    result = run_cli("components", "--kind", "trainer")
    assert result.exit_code == 0, result.output
    assert "betas: array of number = [0.9, 0.98]" in result.output
    assert "max_steps: integer = (not set)" in result.output and "eval_on_start: boolean = false" in result.output
    assert "None" not in result.output and "(0.9, 0.98)" not in result.output and "True" not in result.output


def test_every_kind_is_spelt_in_the_plural_where_its_components_are_listed(toy_spec, toy_host, run_cli):
    from cl_core.catalogue import reference_page
    from cl_core.registry import KIND_HOOKS, plural

    assert [plural(kind) for kind in KIND_HOOKS] == [hook.removeprefix("cl_") for hook in KIND_HOOKS.values()]
    assert (plural("loss"), plural("encoder"), plural("plugin"), plural("class")) == \
        ("losses", "encoders", "plugins", "classes")
    path, _ = toy_spec()
    _bad(path, 'type = "core.clip"', 'type = "core.clipp"')
    unknown = run_cli("spec", "validate", str(path))
    assert "available losses: core.clip, " in unknown.output and "losss" not in unknown.output
    _bad(path, '[loss]\ntype = "core.clipp"\n', "[loss]\n")
    untyped = run_cli("spec", "validate", str(path))
    assert "loss.type: missing: name the loss to use" in untyped.output
    assert "available losses: core.clip, " in untyped.output and "losss" not in untyped.output
    page = reference_page(toy_host.registry())
    assert "## Losses `[loss]`" in page and "## Encoders `[encoders.<role>]`" in page and "Losss" not in page


def test_components_wraps_parameters_to_the_terminal_width_and_keeps_every_one(run_cli, toy_host, monkeypatch):
    from cl_core.spec.structure import param_parts

    monkeypatch.setenv("COLUMNS", "72")
    result = run_cli("components")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 72  # the trainer's parameters alone ran past 600 characters
    assert all(line.startswith("    ") for line in lines if " = " in line)  # parameter lines are indented
    flat = " ".join(result.output.split())
    for entry in toy_host.registry():
        for part in param_parts(entry.info.params):
            assert " ".join(part.split()) in flat, part
