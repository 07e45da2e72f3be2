"""CoCa through the core end to end on coloured shapes: both objectives train and are logged; the saved run loads
whole, as towers, or as a captioner; resume after a kill is bit-identical; bad specs are located errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from cl_core.api import SpecError
from cl_core.runs import train
from cl_core.weights import from_pretrained


class Killed(Exception):
    pass


def test_both_objectives_train_and_the_run_loads_as_towers_or_a_captioner(make_spec, host):
    import cl_coca

    result = train(make_spec(epochs=30, trainer="log_every = 6",
                             extra='[[evaluate]]\ntype = "coca.attention"\nexamples = 0')[0], host=host, log=lambda m: None)
    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in logged if "caption" in r]
    assert len(losses) >= 10 and "contrastive" in losses[0]
    first, last = losses[0], losses[-1]
    assert last["caption"] < 0.6 * first["caption"]
    assert last["contrastive"] < first["contrastive"]
    # the total is the weighted sum (1.0 x contrastive + 2.0 x caption)
    assert first["loss"] == pytest.approx(first["contrastive"] + 2.0 * first["caption"], rel=1e-5)
    weights = load_file(str(result.run_dir / "model.safetensors"))
    assert any(k.startswith("decoder.blocks.0.cross_q") for k in weights)
    assert not any(k.startswith("decoder.text.") for k in weights)  # the tower is saved once, under its encoder

    pipeline = from_pretrained(result.run_dir, host=host, with_data=True)
    source = pipeline.dataset.splits()["train"]
    items = source.get(range(12))
    captions = pipeline.caption("image", items["image"], max_length=12)
    assert sum(c.strip() == t for c, t in zip(captions, items["text"])) >= 6, list(zip(captions, items["text"]))

    image, text = cl_coca.load_towers(result.run_dir, host=host)
    with torch.no_grad():
        a = F_normalize(image.embed(items["image"]))
        b = F_normalize(text.embed(source.class_names))
    top1 = (a @ b.T).argmax(1)
    assert (top1 == torch.as_tensor(source.labels[:12])).float().mean() >= 0.5
    captioner = cl_coca.load_captioner(result.run_dir, host=host)
    assert captioner.caption(items["image"], max_length=12) == captions
    from PIL import Image

    path = result.run_dir.parent / "first.png"
    Image.fromarray(items["image"][0]).save(path)
    assert captioner.caption([str(path)], max_length=12) == captions[:1]  # files are read as the CLI reads them
    with pytest.raises(ValueError, match="a list of images"):
        captioner.caption(Image.open(path))
    assert result.results["coca-attention/heldout/entropy"] <= result.results["coca-attention/heldout/uniform"] + 1e-6


def F_normalize(x):
    return torch.nn.functional.normalize(x, dim=-1)


def test_resume_after_a_kill_gives_bit_identical_weights(make_spec, host):
    trainer = "checkpoint_every = 4"
    reference = train(make_spec(name="full", trainer=trainer)[0], host=host, log=lambda m: None)

    def kill(loop, step):
        if step == 7:
            raise Killed

    path, out = make_spec(name="killed", trainer=trainer)
    with pytest.raises(Killed):
        train(path, host=host, callbacks=[kill], log=lambda m: None)
    assert not (out / "killed" / "model.safetensors").exists()
    resumed = train(resume=out / "killed", host=host, log=lambda m: None)
    assert resumed.steps == reference.steps == 12
    want = load_file(str(reference.run_dir / "model.safetensors"))
    got = load_file(str(out / "killed" / "model.safetensors"))
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


@pytest.mark.parametrize(("change", "path"), [
    ("encoders.image.caption_width=16", "encoders.image.caption_width"),
    ("encoders.image.caption_queries=0", "encoders.image.caption_queries"),
    ("encoders.image.trainable_blocks=17", "encoders.image"),
    ("encoders.image.heads=3", "encoders.image"),
    ("encoders.text.heads=3", "encoders.text"),
    ("objective[1].weight=-1.0", "objective[1].weight"),
    ("objective[1].target=\"image\"", "objective[1].target"),
    ("decoder.text_role=\"image\"", "decoder.text_role"),
])
def test_bad_specs_are_located_spec_errors(make_spec, host, change, path):
    import tomllib

    spec, out = make_spec(name="bad")
    data = tomllib.loads(spec.read_text())
    key, value = change.split("=", 1)
    parsed = tomllib.loads(f"v = {value}")["v"]
    node: object = data
    parts = key.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[parts[-1]] = parsed
    import tomli_w

    spec.write_text(tomli_w.dumps(data))
    with pytest.raises(SpecError) as info:
        train(spec, host=host, log=lambda m: None)
    assert any(p.path.startswith(path) for p in info.value.problems), [p.render() for p in info.value.problems]
    assert not (out / "bad").exists()
