"""DeCap trained through the core end to end on toy towers taken from a toy contrastive run (``core.from-run``):
`cl train` with the caption objective on text only, the caption metrics of the held-out split, a run that loads
without its data or its LM's run (memory and LM from the weights alone), exact resume after a kill, and the spec
mistakes a user can make, located."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from cl_core.api import SpecError, from_pretrained, train

SPEC = """
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "{name}"

[data]
type = "toy.pairs"
captions = true

[sampler]
type = "core.in-batch"
batch_size = 16

[encoders.a]
type = "core.from-run"
source = "{clip}"

[encoders.text]
type = "core.from-run"
source = "{clip_text}"

[decoder]
type = "decap.decap"
image_role = "a"
{lm}
{decoder}

[[objective]]
type = "core.caption"
condition = "text"
target = "text"

[trainer]
epochs = {epochs}
lr = 0.01
checkpoint_every = 4
log_every = 2
progress = false
plots = false
{extra}
"""

SCRATCH = 'scratch = { type = "lm.gpt2", tokenizer = "bytes", layers = 1, width = 16, heads = 2, context = 64 }'

EVALUATE = """
[[evaluate]]
type = "captions.metrics"
role = "a"
meteor = false
tokenizer = "python"
timing = false
max_length = 12

[[evaluate]]
type = "captions.metrics"
name = "clipre"
role = "a"
meteor = false
tokenizer = "python"
timing = false
decoder = { type = "captions.clipre" }
"""


@pytest.fixture
def spec(tmp_path, clip_run):
    clip = clip_run(0)

    def write(name: str = "decap", *, lm: str = SCRATCH, decoder: str = "", extra: str = EVALUATE, epochs: int = 3,
              clip_text=None) -> object:
        path = tmp_path / f"{name}.toml"
        path.write_text(SPEC.format(out=tmp_path / "runs", name=name, clip=clip, clip_text=clip_text or clip, lm=lm,
                                    decoder=decoder, extra=extra, epochs=epochs))
        return path

    write.clip = clip
    return write


def test_decap_trains_on_text_evaluates_and_loads_without_its_data(spec, host):
    result = train(spec(), host=host, log=lambda m: None)
    run = result.run_dir
    scores = result.results
    for name in ("captions", "clipre"):
        for metric in ("bleu4", "rouge_l", "cider_d", "clipscore", "exact_name"):
            assert f"{name}/heldout/{metric}" in scores, (name, metric, sorted(scores))
    state = load_file(str(run / "model.safetensors"))
    assert {"decoder.memory.embeddings", "decoder.memory.text", "decoder.memory.offsets", "decoder.prefix.weight",
            "decoder.space_text", "decoder.space_image", "decoder.lm_config", "decoder.lm.tokenizer_json"} <= set(state)
    assert state["decoder.prefix.weight"].shape == (16, 4)  # one prefix embedding of the LM's width
    pipeline = from_pretrained(run, host=host, with_data=True)
    items = pipeline.dataset.splits()["heldout"].get(range(10))["a"]
    captions = pipeline.caption("a", items, max_length=12)
    loaded = from_pretrained(run, host=host)  # no data: the memory comes from the weights
    assert len(loaded.decoder.memory) == len(pipeline.decoder.memory) == 16
    assert loaded.decoder.memory.texts == pipeline.decoder.memory.texts
    assert loaded.caption("a", items, max_length=12) == captions
    # the text tower's memory and the frozen towers: only the decoder trained
    assert not any(p.requires_grad for p in pipeline.encoders.parameters())


def test_a_decoder_started_from_an_lm_run_loads_without_that_run(spec, host, tmp_path):
    lm_run = _tiny_lm_run(tmp_path, host)
    path = spec("from-lm", lm=f'lm = "{lm_run}"', extra="", epochs=2)
    run = train(path, host=host, log=lambda m: None).run_dir
    pipeline = from_pretrained(run, host=host, with_data=True)
    assert pipeline.decoder.lm.tokenizer.kind == "bytes"
    items = pipeline.dataset.splits()["heldout"].get(range(6))["a"]
    captions = pipeline.caption("a", items, max_length=8)
    shutil.rmtree(lm_run)  # the LM's run is gone: its architecture comes from decoder.lm_config
    loaded = from_pretrained(run, host=host)
    assert loaded.caption("a", items, max_length=8) == captions
    assert loaded.decoder.lm.context == 48 and loaded.decoder.lm.width == 24


def _tiny_lm_run(tmp_path, host):
    """A tiny lm.gpt2 "run" (byte tokenizer, width 24, context 48), saved with save_pretrained."""
    from cl_core.api import build, save_pretrained
    from cl_core.build import build_pipeline
    from cl_core.spec import loads_spec

    registry = host.registry()
    spec = loads_spec("""
format = 1
[decoder]
type = "lm.gpt2"
tokenizer = "bytes"
layers = 1
width = 24
heads = 2
context = 48
""", registry)
    assert build is not None
    return save_pretrained(build_pipeline(spec, registry), tmp_path / "lm-run")


class Killed(Exception):
    """Stands for SIGKILL right after an optimizer step."""


def test_resume_after_a_kill_gives_bit_identical_weights(spec, host):
    decoder = "entities = 2\nentity_mask = 0.4"  # the entity masking draws from the RNG: it resumes too
    lm = SCRATCH.replace("context = 64", "context = 128")
    reference = train(spec("full", lm=lm, decoder=decoder, extra=""), host=host, log=lambda m: None)

    def kill(trainer, step):
        if step == 7:
            raise Killed

    with pytest.raises(Killed):
        train(spec("killed", lm=lm, decoder=decoder, extra=""), host=host, callbacks=[kill], log=lambda m: None)
    resumed = train(resume=reference.run_dir.parent / "killed", host=host, log=lambda m: None)
    assert resumed.steps == reference.steps
    a = load_file(str(reference.run_dir / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "model.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("decoder.lm.model.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_spec_mistakes_are_located_before_any_work(spec, host, clip_run, tmp_path):
    other = clip_run(1)
    cases = {
        "towers of two runs": (spec("two", clip_text=other),
                               "decoder.image_role: the 'a' tower comes from .* and the 'text' tower from"),
        "no text role": (spec("role", decoder='text_role = "caption"'), "decoder.text_role: no encoder role 'caption'"),
        "a text tower that trains": (spec("trains").read_text().replace(
            f'[encoders.text]\ntype = "core.from-run"\nsource = "{spec.clip}"',
            f'[encoders.text]\ntype = "core.from-run"\nsource = "{spec.clip}"\nfreeze = false'),
            "decoder.text_role: the encoder of role 'text' trains in this spec"),
        "too long for the LM": (spec("long", decoder="max_length = 80"),
                                "decoder.max_length: a training row of max_length = 80 tokens after the prefix exceeds "
                                "the LM's context of 64 positions"),
        "lm and scratch": (spec("both", decoder='lm = "org/some-lm"'), "decoder: .*not both"),
        "scratch of another type": (spec("other", lm='scratch = { type = "toy.char-decoder" }'),
                                    "DeCap's LM is an \"lm.gpt2\" table"),
    }
    for case, (given, expected) in cases.items():
        path = given if not isinstance(given, str) else tmp_path / "case.toml"
        if isinstance(given, str):
            path.write_text(given)
        with pytest.raises(SpecError, match=expected):
            train(path, host=host, log=lambda m: None)
        assert not (tmp_path / "runs" / path.stem).exists(), case  # nothing written


def test_the_captioners_benchmark_prints_one_table(spec, host, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    run = train(spec("bench", extra="", epochs=1), host=host, log=lambda m: None).run_dir
    script = Path(__file__).resolve().parents[3] / "benchmarks" / "captioners.py"
    module_spec = importlib.util.spec_from_file_location("captioners", script)
    captioners = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(captioners)
    captioners.HOST = host
    out = tmp_path / "results.json"
    lm_run = _tiny_lm_run(tmp_path, host)
    assert captioners.main([f"{run}=tiny DeCap", "--role", "a", "--lm", str(lm_run), "--no-meteor", "--tokenizer",
                            "python", "--clipre-names", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| unconditioned LM [lm-run] | heldout |" in table
    assert "| CLIPRe (memory: training captions + 16 class names of every split) | heldout |" in table
    assert "| tiny DeCap | heldout |" in table and "| CLIPRe (memory: 16 training captions) | heldout |" in table
    assert "BLEU-4" in table and "CIDEr" in table and "s/100" in table and "image tower:" in table
    import json

    results = json.loads(out.read_text())
    assert set(results["tiny DeCap"]["heldout"]) >= {"bleu4", "cider_d", "clipscore", "exact_name", "decode_seconds_per_100"}


def test_the_captioners_benchmark_leaves_autograd_on(spec, host, tmp_path, capsys):
    """The benchmark runs without gradients inside, but a caller (a test, a notebook) keeps its autograd state."""
    torch.set_grad_enabled(True)
    test_the_captioners_benchmark_prints_one_table(spec, host, tmp_path, capsys)
    assert torch.is_grad_enabled()
