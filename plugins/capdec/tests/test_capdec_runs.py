"""The decoders through the core end to end, over a toy contrastive run taken with ``core.from-run``: `cl train`
writes a run that loads offline without the LM's run; resume after a kill gives bit-identical decoder weights
(ClipCap, and CapDec whose noise draws from the checkpointed RNG); CapDec's modality offset is computed from the
pairs, saved with the model and applied when decoding; `captions.metrics` scores the decoder."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from cl_core.runs import train
from cl_core.weights import from_pretrained


class Killed(Exception):
    pass


def _decoder_weights(run_dir):
    return {k: v for k, v in load_file(str(run_dir / "model.safetensors")).items() if k.startswith("decoder.")}


@pytest.mark.parametrize("kind", ["clipcap", "capdec"])
def test_resume_after_a_kill_gives_bit_identical_decoder_weights(make_spec, host, kind):
    """96 pairs in batches of 16: 6 steps per epoch, 2 epochs; a checkpoint every 4 steps and at the epoch's end,
    killed after step 6.

    The towers' embedding caches are off: with them, an item's embedding is computed with whichever other items
    were missing from the cache at the time, and its last bits (1e-8) depend on that company, which a resumed run
    does not repeat when items recur (the toy captions are 6 class names). The decoder's own state (weights,
    optimizer, CapDec's noise draws from the checkpointed RNG) resumes exactly."""
    trainer = "checkpoint_every = 4"
    reference = train(make_spec(kind=kind, name="full", trainer=trainer, cache=False)[0], host=host,
                      log=lambda m: None)

    def kill(loop, step):
        if step == 6:
            raise Killed

    path, out = make_spec(kind=kind, name="killed", trainer=trainer, cache=False)
    with pytest.raises(Killed):
        train(path, host=host, callbacks=[kill], log=lambda m: None)
    assert not (out / "killed" / "model.safetensors").exists()
    resumed = train(resume=out / "killed", host=host, log=lambda m: None)
    assert resumed.steps == reference.steps == 12
    want, got = _decoder_weights(reference.run_dir), _decoder_weights(out / "killed")
    assert want.keys() == got.keys() and any(k.startswith("decoder.mapper.") for k in want)
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_a_run_loads_without_the_lm_run_and_captions_the_same(make_spec, host, lm_run, tmp_path):
    lm_copy = tmp_path / "lm-copy"
    shutil.copytree(lm_run, lm_copy)
    result = train(make_spec(lm=lm_copy, name="dec")[0], host=host, log=lambda m: None)
    pipeline = from_pretrained(result.run_dir, host=host, with_data=True)
    items = pipeline.dataset.splits()["heldout"].get(range(6))["a"]
    before = pipeline.caption("a", items, max_length=8)
    shutil.rmtree(lm_copy)
    again = from_pretrained(result.run_dir, host=host)
    assert again.caption("a", items, max_length=8) == before
    assert isinstance(again.decoder.lm.model.config.n_embd, int) and again.decoder.lm.width == 32
    card = (result.run_dir / "README.md").read_text()
    assert "cl caption" in card


def test_the_modality_offset_is_saved_and_applied(make_spec, host):
    path, _ = make_spec(kind="capdec", name="off", decoder='offset = true\noffset_split = "train"')
    result = train(path, host=host, log=lambda m: None)
    pipeline = from_pretrained(result.run_dir, host=host, with_data=True)
    decoder = pipeline.decoder
    # recomputed by hand from the same examples (every example of the 96-pair training split)
    source = pipeline.dataset.splits()["train"]
    items = source.get(range(len(source)))
    image, text = pipeline.embed("a", items["a"]), pipeline.embed("text", items["text"])
    want = F.normalize(text, dim=-1).mean(0) - F.normalize(image, dim=-1).mean(0)
    torch.testing.assert_close(decoder.offset, want, rtol=1e-5, atol=1e-6)
    assert bool(decoder.offset_ready) and "decoder.offset" in load_file(str(result.run_dir / "model.safetensors"))
    seen = []
    decoder.mapper.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    pipeline.caption("a", items["a"][:3], max_length=4)
    torch.testing.assert_close(seen[-1], F.normalize(image[:3], dim=-1) + want)  # added, not re-normalised (CapDec)
    # the same run decoded without it, as `cl eval RUN --set decoder.offset=false` builds it
    from cl_core.build import build_pipeline
    from cl_core.spec import load_spec
    from cl_core.weights import load_weights

    registry = host.registry()
    spec = load_spec(result.run_dir / "spec.toml", registry, overrides=[("decoder.offset", False)])
    plain = build_pipeline(spec, registry, with_data=False, weights_follow=True)
    load_weights(plain, result.run_dir / "model.safetensors")
    plain.eval()
    torch.testing.assert_close(plain.decoder.offset, want, rtol=1e-5, atol=1e-6)  # still saved, not used
    plain.decoder.mapper.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    plain.caption("a", items["a"][:3], max_length=4)
    torch.testing.assert_close(seen[-1], F.normalize(image[:3], dim=-1))


def test_captions_metrics_scores_a_trained_decoder(make_spec, host):
    evaluate = '[[evaluate]]\ntype = "captions.metrics"\nrole = "a"\nmeteor = false\ntimings = false\n'
    evaluate = evaluate.replace("timings", "timing")
    result = train(make_spec(name="scored", evaluate=evaluate)[0], host=host,
                   log=lambda m: None)
    metrics = result.results
    for key in ("bleu4", "rouge_l", "cider_d", "clipscore", "exact_name"):
        assert f"captions/heldout/{key}" in metrics, sorted(metrics)
