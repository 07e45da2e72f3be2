"""The core's second-half shape, end to end through the CLI on the toy plugin: a three-role pipeline whose two
pair types share an anchor role, a contrastive + caption pipeline whose decoder cross-attends to token states
(a tiny CoCa), and a decoder trained on a frozen tower taken from an earlier run by ``source``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cl_core import cli
from cl_core.errors import SpecError
from cl_core.spec import load_spec
from cl_core.weights import from_pretrained


@pytest.fixture
def run_cli(toy_host, monkeypatch):
    monkeypatch.setattr(cli, "_host", lambda: toy_host)

    def invoke(*args):
        result = CliRunner().invoke(cli.main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


BOUND = """
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "bound"

[data]
type = "toy.bound"
size = 256
classes = 8

[sampler]
type = "core.in-batch"
batch_size = 16
mix = "round-robin"

[encoders.a]
type = "toy.linear"
[encoders.b]
type = "toy.linear"
[encoders.c]
type = "toy.linear"

[[objective]]
type = "core.contrastive"
roles = ["a", "b"]
loss = {{ type = "core.clip" }}
scorer = {{ type = "core.cosine", temperature = 0.1, learn_temperature = false }}

[[objective]]
type = "core.contrastive"
roles = ["a", "c"]
loss = {{ type = "core.clip" }}
scorer = {{ type = "core.cosine", temperature = 0.05, learn_temperature = true }}

[trainer]
epochs = 6
lr = 0.02
log_every = 1
progress = false
plots = false
"""


def _recall(pipeline, source, query: str, candidate: str) -> float:
    rows = [i for i in range(len(source)) if int(source.groups[i]) == (0 if "b" in (query, candidate) else 1)]
    items = source.get(rows)
    q = torch.nn.functional.normalize(pipeline.embed(query, items[query]), dim=-1)
    k = torch.nn.functional.normalize(pipeline.embed(candidate, items[candidate]), dim=-1)
    labels = torch.as_tensor(source.labels[rows])
    return float((labels[(q @ k.T).argmax(1)] == labels).float().mean())


def test_three_roles_two_pair_types_sharing_an_anchor(tmp_path, run_cli):
    spec = tmp_path / "bound.toml"
    spec.write_text(BOUND.format(out=tmp_path / "runs"))
    run_cli("train", spec)
    run = tmp_path / "runs" / "bound"
    steps = [m for m in _metrics(run) if "loss" in m]
    # round-robin batches alternate the pair types: each step trains one objective, logged by its name
    assert any("a-b" in m and "a-c" not in m for m in steps) and any("a-c" in m and "a-b" not in m for m in steps)
    assert all(("a-b/logit_scale" in m) and ("a-c/logit_scale" in m) for m in steps)
    first_ac = next(m["a-c"] for m in steps if "a-c" in m)
    last_ac = [m["a-c"] for m in steps if "a-c" in m][-1]
    assert last_ac < first_ac * 0.7  # the rotated view is learned, not copied
    pipeline = from_pretrained(run, host=cli._host(), with_data=True)
    held = pipeline.dataset.splits()["heldout"]
    assert _recall(pipeline, held, "a", "b") > 0.6 and _recall(pipeline, held, "a", "c") > 0.6
    assert pipeline.scorer_for("a", "c").logged_scalars()["logit_scale"] != pytest.approx(20.0)  # learned
    assert pipeline.scorer_for("a", "b").logged_scalars()["logit_scale"] == pytest.approx(10.0)  # fixed


COCA = """
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "coca"

[data]
type = "toy.pairs"
size = 256
classes = 6
captions = true

[sampler]
type = "core.in-batch"
batch_size = 32

[encoders.a]
type = "toy.linear"
tokens = 3
embed_dim = 8
[encoders.text]
type = "toy.chars"
embed_dim = 8

[decoder]
type = "toy.char-decoder"
embed_dim = 8
reads_tokens = true

[[objective]]
type = "core.contrastive"
roles = ["a", "text"]
loss = {{ type = "core.clip" }}
weight = 1.0

[[objective]]
type = "core.caption"
condition = "a"
target = "text"
weight = 2.0

[trainer]
epochs = 30
lr = 0.01
log_every = 8
progress = false
plots = false
"""


def test_contrastive_and_caption_objectives_train_one_coca_shaped_model(tmp_path, run_cli):
    spec = tmp_path / "coca.toml"
    spec.write_text(COCA.format(out=tmp_path / "runs"))
    run_cli("train", spec)
    run = tmp_path / "runs" / "coca"
    steps = [m for m in _metrics(run) if "loss" in m]
    last = steps[-1]
    assert abs(last["loss"] - (last["a-text"] + 2.0 * last["caption"])) < 1e-4  # 1.0 * CLIP + 2.0 * caption
    assert last["caption"] < steps[0]["caption"] * 0.5
    pipeline = from_pretrained(run, host=cli._host(), with_data=True)
    assert any(k.startswith("decoder.") for k in pipeline.state_dict())
    source = pipeline.dataset.splits()["heldout"]
    items = source.get(list(range(24)))
    captions = pipeline.caption("a", items["a"], max_length=12)
    exact = sum(c == t for c, t in zip(captions, items["text"]))
    assert exact >= 18, list(zip(captions, items["text"]))  # the captioner names the class from the tokens
    with pytest.raises(ValueError, match="reads token states"):
        pipeline.decoder.decode(pipeline.embed("a", items["a"][:2]))


DECODER = """
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "decoder"
[data]
type = "toy.pairs"
size = 256
classes = 6
captions = true
[sampler]
type = "core.in-batch"
batch_size = 32
[encoders.a]
type = "core.from-run"
source = "{source}"
[decoder]
type = "toy.char-decoder"
[[objective]]
type = "core.caption"
condition = "a"
[trainer]
epochs = 40
lr = 0.01
progress = false
plots = false
"""


def _base_run(toy_spec) -> Path:
    """A toy CLIP-shaped run over 6 classes (the towers the decoder tests take), trained in-process."""
    from cl_core.runs import train

    path, out = toy_spec(epochs=4, name="base")
    train(path, host=cli._host(), log=lambda m: None, overrides=[("data.classes", 6), ("data.size", 128),
                                                                ("scorer.temperature", 0.1), ("trainer.lr", 0.02)])
    return out / "base"


def test_a_decoder_trains_on_a_frozen_tower_from_an_earlier_run_and_the_run_stands_alone(tmp_path, run_cli,
                                                                                         toy_spec):
    base = _base_run(toy_spec)
    spec = tmp_path / "decoder.toml"
    spec.write_text(DECODER.format(out=tmp_path / "runs", source=base))
    run_cli("train", spec)
    run = tmp_path / "runs" / "decoder"

    saved = load_spec(run / "spec.toml", cli._host().registry())
    pinned = saved.encoders["a"].params
    assert pinned.encoder.type == "toy.linear" and pinned.role == "a"  # the tower's own table is saved
    trained = from_pretrained(run, host=cli._host())
    tower = from_pretrained(base, host=cli._host())
    probe = [torch.randn(8).numpy() for _ in range(5)]
    torch.testing.assert_close(trained.embed("a", probe), tower.embed("a", probe))  # frozen: the base's weights

    shutil.rmtree(base)  # the decoder run keeps the tower's weights and table: it loads without its source
    alone = from_pretrained(run, host=cli._host(), with_data=True)
    source = alone.dataset.splits()["heldout"]
    items = source.get(list(range(24)))
    captions = alone.caption("a", items["a"], max_length=12)
    assert sum(c == t for c, t in zip(captions, items["text"])) >= 18, list(zip(captions, items["text"]))
    with pytest.raises(SpecError, match="source"):  # a new run of the same spec needs its source
        run_cli_error(spec)


def run_cli_error(spec: Path):
    from cl_core.runs import train

    train(spec, host=cli._host(), log=lambda m: None)


def test_from_run_errors_are_located(tmp_path, toy_host, toy_spec, run_cli):
    from cl_core.errors import BuildError
    from cl_core.runs import train

    base = _base_run(toy_spec)
    spec = tmp_path / "decoder.toml"
    spec.write_text(DECODER.format(out=tmp_path / "runs", source=base).replace('source = "', 'role = "audio"\nsource = "'))
    with pytest.raises(BuildError, match=r"encoders\.a\.role: .* has no encoder role 'audio'; its roles: a, b"):
        train(spec, host=toy_host, log=lambda m: None)
    assert not (tmp_path / "runs" / "decoder").exists()  # nothing half-written
    spec.write_text(DECODER.format(out=tmp_path / "runs", source=tmp_path / "nowhere"))
    with pytest.raises(SpecError, match="source: folder does not exist"):
        train(spec, host=toy_host, log=lambda m: None)


def test_a_spec_with_nothing_to_train_is_evaluated_not_trained(tmp_path, toy_host, run_cli, toy_spec):
    from cl_core.runs import train

    base = _base_run(toy_spec)
    spec = tmp_path / "eval.toml"
    spec.write_text(f"""
format = 1
[run]
device = "cpu"
[data]
type = "toy.pairs"
size = 128
classes = 6
[encoders.a]
type = "core.from-run"
source = "{base}"
[encoders.b]
type = "core.from-run"
source = "{base}"
[scorer]
type = "core.cosine"
[[evaluate]]
type = "toy.alignment"
""")
    out = run_cli("eval", spec)
    assert "alignment/heldout/recall@1" in out
    with pytest.raises(SpecError, match="nothing to train"):
        train(spec, host=toy_host, log=lambda m: None)


def test_objective_mistakes_are_located_before_anything_is_written(tmp_path, toy_host):
    from cl_core.runs import train

    base = BOUND.format(out=tmp_path / "runs")
    cases = {
        "unknown role": (base.replace('roles = ["a", "c"]', 'roles = ["a", "d"]'),
                         "objective[1].roles[1]: no encoder role 'd'; encoder roles: a, b, c"),
        "same name twice": (base.replace('roles = ["a", "c"]', 'roles = ["a", "b"]'),
                            "objective[1].name: 'a-b' names objective[0] already"),
        "negative weight": (base.replace('roles = ["a", "c"]', 'roles = ["a", "c"]\nweight = -1.0'),
                            "objective[1].weight: must be >= 0"),
        "caption without decoder": (base + '\n[[objective]]\ntype = "core.caption"\ncondition = "a"\n',
                                    "objective[2].type: a caption objective trains the spec's [decoder]"),
        "an unused top-level loss": (base.replace("[trainer]", '[loss]\ntype = "core.clip"\n\n[trainer]'),
                                     "loss: no [[objective]] uses this loss"),
    }
    for case, (text, expected) in cases.items():
        spec = tmp_path / "bad.toml"
        spec.write_text(text)
        with pytest.raises(SpecError) as info:
            train(spec, host=toy_host, log=lambda m: None)
        assert expected in str(info.value), (case, str(info.value))
        assert not (tmp_path / "runs").exists(), case


class Killed(Exception):
    """Stands for SIGKILL: the process stops right after an optimizer step."""


@pytest.mark.parametrize("kill_at", [3, 8])
def test_a_killed_contrastive_and_caption_run_resumes_to_bit_identical_weights(tmp_path, toy_host, kill_at):
    """Two objectives, a trainable decoder that cross-attends to token states: the resumed run's weights,
    decoder included, equal an uninterrupted run's exactly (4 steps per epoch: kills mid-epoch and after it)."""
    from safetensors.torch import load_file

    from cl_core.runs import train

    text = COCA.replace("epochs = 30", "epochs = 3\ncheckpoint_every = 2").replace("size = 256", "size = 128")
    full, killed = tmp_path / "full.toml", tmp_path / "killed.toml"
    full.write_text(text.format(out=tmp_path / "runs").replace('name = "coca"', 'name = "full"'))
    killed.write_text(text.format(out=tmp_path / "runs").replace('name = "coca"', 'name = "killed"'))
    reference = train(full, host=toy_host, log=lambda m: None)

    def kill(trainer, step):
        if step == kill_at:
            raise Killed

    with pytest.raises(Killed):
        train(killed, host=toy_host, callbacks=[kill], log=lambda m: None)
    resumed = train(resume=tmp_path / "runs" / "killed", host=toy_host, log=lambda m: None)
    assert resumed.steps == reference.steps == 12
    want, got = load_file(str(reference.run_dir / "model.safetensors")), load_file(str(resumed.run_dir / "model.safetensors"))
    assert want.keys() == got.keys() and any(k.startswith("decoder.") for k in want)
    for key in want:
        assert torch.equal(want[key], got[key]), key
