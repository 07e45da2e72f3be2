"""The LM trained through the core end to end: `cl train` on text (Lee corpus + the emoji fixture captions) with a
BPE trained on the data, held-out perplexity that falls, a run that loads offline without its data or tokenizer
cache (``from_pretrained``, ``cl_lm.load_lm``, a transformers export), exact resume after a kill, and located
spec errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cl_core.errors import SpecError
from cl_core.plugins import PluginHost
from cl_core.runs import train

FIXTURE = Path(__file__).resolve().parents[2] / "datasets" / "tests" / "fixtures" / "emoji"

SPEC = """
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "{name}"

[data]
type = "lm.text"
sources = ["lee"]
max_documents = 160
holdout = 0.1
emoji = true
emoji_repeat = 3
emoji_holdout = 0.3
emoji_openmoji_json = "{fixture}/openmoji.json"
emoji_noto_dir = "{fixture}/noto"

[sampler]
type = "core.in-batch"
batch_size = 16

[decoder]
type = "lm.gpt2"
tokenizer = "bpe"
vocab_size = 400
context = 64
layers = 2
width = 48
heads = 2

[[objective]]
type = "lm.next-token"

[trainer]
epochs = 3
lr = 3e-3
warmup_steps = 5
log_every = 5
checkpoint_every = 10
eval_on_start = true
progress = false
plots = false

[[evaluate]]
type = "lm.perplexity"
max_texts = 100
"""


@pytest.fixture
def host():
    return PluginHost(only=["lm"], strict=True)


@pytest.fixture
def spec(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))  # the BPE is cached here, and deleted below

    def write(name: str = "lm", *, evaluate: bool = True) -> Path:
        path = tmp_path / f"{name}.toml"
        text = SPEC.format(out=tmp_path / "runs", name=name, fixture=FIXTURE)
        if not evaluate:
            text = text[: text.index("[[evaluate]]")].replace("eval_on_start = true", "eval_on_start = false")
        path.write_text(text)
        return path

    return write


def test_the_lm_trains_through_the_core_and_loads_offline(spec, host, tmp_path):
    import cl_lm
    from cl_core.weights import from_pretrained

    result = train(spec(), host=host, log=lambda m: None)
    run = result.run_dir
    start, end = result.start_results, result.results
    for split in ("heldout", "heldout-captions"):
        assert end[f"perplexity/{split}"] < 0.5 * start[f"perplexity/{split}"], (split, start, end)
    assert end["tokens/heldout-captions/count"] > 0
    card = (run / "README.md").read_text()
    assert "cl_lm.load_lm" in card and "perplexity/heldout" in card

    shutil.rmtree(tmp_path / "cache")  # neither the data nor the trained BPE's cache is needed to load it
    pipeline = from_pretrained(run, host=host)
    lm = cl_lm.load_lm(run, host=host)
    assert lm.tokenizer.kind == "bpe" and lm.tokenizer.vocab_size <= 400
    prompts = ["an emoji of", "The"]
    assert lm.generate(prompts=prompts, max_new_tokens=8).texts == \
        pipeline.decoder.generate(prompts=prompts, max_new_tokens=8).texts
    assert lm.training is False and all(p.requires_grad for p in lm.parameters())
    frozen = cl_lm.load_lm(run, host=host, freeze=True)
    assert not any(p.requires_grad for p in frozen.parameters())

    # the transformers export generates what cl_lm does (greedy, same weights and tokenizer)
    from transformers import AutoTokenizer, GPT2LMHeadModel

    folder = cl_lm.export(run, tmp_path / "export")
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = [tokenizer.bos_token_id] + tokenizer("an emoji of")["input_ids"]
    theirs = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                            max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    ours = lm.generate(prompts=["an emoji of"], max_new_tokens=8)
    assert theirs[0, len(ids):].tolist()[: len(ours.sequences[0])] == ours.sequences[0].tolist()


class Killed(Exception):
    """Stands for SIGKILL right after an optimizer step."""


def test_resume_after_a_kill_gives_bit_identical_weights(spec, host):
    reference = train(spec("full", evaluate=False), host=host, log=lambda m: None)

    def kill(trainer, step):
        if step == 13:
            raise Killed

    path = spec("killed", evaluate=False)
    with pytest.raises(Killed):
        train(path, host=host, callbacks=[kill], log=lambda m: None)
    resumed = train(resume=reference.run_dir.parent / "killed", host=host, log=lambda m: None)
    assert resumed.steps == reference.steps
    a, b = load_file(str(reference.run_dir / "model.safetensors")), load_file(str(resumed.run_dir / "model.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("decoder.model.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_spec_mistakes_are_located(tmp_path, host):
    base = SPEC.format(out=tmp_path / "runs", name="bad", fixture=FIXTURE)
    cases = {
        "width not divisible": (base.replace("heads = 2", "heads = 5"), "heads = 5 must divide width = 48"),
        "bad top_p": (base.replace("heads = 2", "heads = 2\ntop_p = 1.5"), "decoder.top_p"),
        "no decoder": (base[: base.index("[decoder]")] + base[base.index("[[objective]]"):],
                       "a spec needs [encoders.<role>] tables or a [decoder]"),
    }
    for case, (text, expected) in cases.items():
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(SpecError) as info:
            train(path, host=host, log=lambda m: None)
        assert expected in str(info.value), (case, str(info.value))
        assert not (tmp_path / "runs" / "bad").exists(), case


def test_the_objective_and_the_evaluator_need_the_lm_decoder():
    from cl_core.api import BuildContext
    from cl_core.spec import loads_spec
    from cl_lm.evaluate import build_perplexity
    from cl_lm.objective import build_next_token
    from cl_lm.params import NextTokenParams, PerplexityParams

    ctx = BuildContext(path="objective[0]", source="x.toml")
    with pytest.raises(SpecError, match=r"objective\[0\]\.type: lm.next-token trains the spec's \[decoder\] of "
                                        r"type \"lm.gpt2\", and there is none"):
        build_next_token(NextTokenParams(), ctx)
    registry = PluginHost(only=["lm"], strict=True).registry()
    spec = loads_spec('[decoder]\ntype = "lm.gpt2"\ntokenizer = "bytes"\n', registry)
    with pytest.raises(SpecError, match=r"evaluate\[0\]\.type: lm.perplexity scores"):
        build_perplexity(PerplexityParams(), BuildContext(spec=spec, path="evaluate[0]"))


def test_an_lm_starts_from_an_earlier_run_with_init(spec, host, tmp_path):
    """``init``: fine-tuning starts from the run's weights and tokenizer exactly; another architecture is a located
    build error; a run saved from it loads without the init run."""
    import cl_lm
    from cl_core.api import BuildContext, BuildError
    from cl_core.weights import from_pretrained
    from cl_lm.model import build_gpt2
    from cl_lm.params import GPT2Params

    run = train(spec(evaluate=False), host=host, log=lambda m: None).run_dir
    start = cl_lm.load_lm(run, host=host)
    table = {k: getattr(start.params, k) for k in ("tokenizer", "vocab_size", "context", "layers", "width", "heads")}
    tuned = build_gpt2(GPT2Params(**table, init=str(run), dropout=0.1), BuildContext(path="decoder"))
    assert tuned.tokenizer.to_bytes().tobytes() == start.tokenizer.to_bytes().tobytes()
    for name, value in start.model.state_dict().items():
        assert torch.equal(tuned.model.state_dict()[name], value), name
    assert tuned.params.dropout == 0.1 and tuned.model.config.resid_pdrop == 0.1  # this table's params, not the run's

    with pytest.raises(BuildError, match=r"decoder\.init: .* has another architecture: layers = 2 \(the table says 1\)"):
        build_gpt2(GPT2Params(**{**table, "layers": 1}, init=str(run)), BuildContext(path="decoder"))
    with pytest.raises(BuildError, match=r"decoder\.init: folder does not exist"):
        build_gpt2(GPT2Params(**table, init=str(tmp_path / "gone")), BuildContext(path="decoder"))
    stand_in = build_gpt2(GPT2Params(**table, init=str(tmp_path / "gone")), BuildContext(path="decoder",
                                                                                          weights_follow=True))
    assert stand_in.model.config.n_layer == start.model.config.n_layer  # a load replaces it; the init run is not read
    assert from_pretrained(run, host=host).decoder is not None
