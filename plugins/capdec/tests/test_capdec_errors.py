"""Bad input, each a clear, located error before any work (and no run directory left behind): a condition of the
wrong width, a decoder paired with a model whose space it was not trained in, a prefix (and prompt) past the LM's
context, empty captions, roles that are not encoder roles, a tower that trains, an objective on another role."""

from __future__ import annotations

import pytest
import torch

from cl_capdec.decoder import build_decoder
from cl_capdec.params import CapDecParams, ClipCapParams
from cl_core.api import BuildContext, BuildError, DataError, EncoderOutput, SpecError, hookimpl
from cl_core.runs import train


def _decoder(lm_run, **kw):
    return build_decoder(ClipCapParams(lm=str(lm_run), embed_dim=8, prefix_length=2, **kw), BuildContext()).eval()


def test_a_condition_of_the_wrong_width_is_refused(lm_run):
    decoder = _decoder(lm_run)
    with pytest.raises(ValueError, match="reads 8-dim embeddings.*got 5-dim"):
        decoder.decode(torch.randn(2, 5), max_length=4)
    targets = decoder.prepare(["class 1", "class 2"])
    with pytest.raises(ValueError, match="reads 8-dim embeddings.*got 6-dim"):
        decoder.caption_loss(EncoderOutput(torch.randn(2, 6)), targets)


def test_prefix_and_caption_past_the_lm_context(lm_run, make_spec, host):
    with pytest.raises(BuildError, match="decoder.prefix_length: 63 prefix embeddings leave no room.*context of 64"):
        build_decoder(ClipCapParams(lm=str(lm_run), embed_dim=8, prefix_length=63), BuildContext(path="decoder"))
    decoder = _decoder(lm_run)
    with pytest.raises(ValueError, match="prefix_length 2 \\+ max_length 70 = 72 exceeds the LM's context of 64"):
        decoder.decode(torch.randn(2, 8), max_length=70)
    # in a spec: located, and nothing is written
    path, _ = make_spec(name="long")
    path.write_text(path.read_text().replace("prefix_length = 3", "prefix_length = 64"))
    with pytest.raises(BuildError, match="decoder.prefix_length: 64"):
        train(path, host=host, log=lambda m: None)
    assert not (path.parent / "runs" / "long").exists()


def test_empty_captions(lm_run, clip_run):
    decoder = _decoder(lm_run)
    with pytest.raises(ValueError, match=r"captions\[1\] is empty"):
        decoder.prepare(["class 1", "  ", "class 2"])
    # a training split with empty captions: a located DataError before training, no run directory
    from cl_core.build import build_pipeline
    from cl_core.plugins import PluginHost
    from cl_core.spec import loads_spec
    from cl_core.testing import toy

    import sys
    import types

    module = types.ModuleType("capdec_test_data")

    @hookimpl
    def cl_datasets():
        from attrs import frozen

        from cl_core.api import ComponentInfo

        @frozen
        class Params:
            """Toy vectors with captions, two of them empty."""

        yield ComponentInfo(name="capdectest.blanks", params=Params, factory=_blanks, summary="toy with blanks")

    module.cl_datasets = cl_datasets
    sys.modules["capdec_test_data"] = module
    h = PluginHost(only=["lm", "capdec"], strict=True)
    h.register(toy, name="toy")
    h.register(module, name="capdectest")
    registry = h.registry()
    spec = loads_spec(f"""
format = 1
[data]
type = "capdectest.blanks"
[sampler]
type = "core.in-batch"
batch_size = 4
[encoders.a]
type = "core.from-run"
source = "{clip_run}"
[encoders.text]
type = "core.from-run"
source = "{clip_run}"
[decoder]
type = "capdec.clipcap"
lm = "{lm_run}"
condition = "a"
prefix_length = 2
[[objective]]
type = "core.caption"
condition = "a"
""", registry)
    with pytest.raises(DataError, match=r"split 'train' has 2 empty caption\(s\) in field 'text' \(examples 1, 3\)"):
        build_pipeline(spec, registry)


def _blanks(params, ctx):
    import numpy as np

    from cl_core.api import Dataset, DataSource

    class Source(DataSource):
        fields = ("a", "text")
        texts = ["class 1", "", "class 2", "   ", "class 3", "class 4"]

        def __len__(self):
            return len(self.texts)

        def get(self, indices):
            return {"a": [np.ones(8, dtype="float32") * i for i in indices], "text": [self.texts[i] for i in indices]}

    class Blanks(Dataset):
        def splits(self):
            return {"train": Source()}

    return Blanks()


def test_a_decoder_paired_with_another_model_is_refused(make_spec, host, other_clip_run):
    trained = train(make_spec(name="trained")[0], host=host, log=lambda m: None).run_dir
    # the same towers: init loads; another run's towers (same widths, other weights): a located error
    ok, _ = make_spec(name="again", decoder=f'init = "{trained}"')
    train(ok, host=host, log=lambda m: None)
    bad, out = make_spec(name="other", clip=other_clip_run, decoder=f'init = "{trained}"')
    with pytest.raises(BuildError, match="decoder.init: .* was trained in the embedding space of another model"):
        train(bad, host=host, log=lambda m: None)
    assert not (out / "other").exists()
    # in Python: check_space against an encoder of another space, or of another width
    from cl_core.weights import from_pretrained

    mine = from_pretrained(trained, host=host)
    other = from_pretrained(other_clip_run, host=host)
    mine.decoder.check_space(mine.encoder("a"))
    with pytest.raises(ValueError, match="trained in the embedding space of another model"):
        mine.decoder.check_space(other.encoder("a"))


def test_spec_mistakes_are_located(make_spec, host, tmp_path):
    path, _ = make_spec(name="norole", decoder='condition = "image"')
    text = path.read_text().replace('condition = "a"\nprefix_length', 'prefix_length')
    path.write_text(text)
    with pytest.raises(SpecError, match="decoder.condition: no encoder role 'image'"):
        train(path, host=host, log=lambda m: None)
    path, _ = make_spec(name="objective")
    path.write_text(path.read_text().replace('type = "core.caption"\ncondition = "a"',
                                             'type = "core.caption"\ncondition = "text"'))
    with pytest.raises(SpecError, match="objective\\[0\\].condition: 'text', and the decoder .* role 'a'"):
        train(path, host=host, log=lambda m: None)
    path, _ = make_spec(name="trains")
    path.write_text(path.read_text().replace("cache = true\n[encoders.text]", "freeze = false\n[encoders.text]", 1))
    with pytest.raises(SpecError, match="decoder.condition: the encoder of role 'a' trains in this spec"):
        train(path, host=host, log=lambda m: None)
    with pytest.raises(BuildError, match="decoder.lm: folder does not exist"):
        build_decoder(ClipCapParams(lm=str(tmp_path / "nowhere"), embed_dim=8), BuildContext(path="decoder"))


def test_offset_without_pairs_is_a_located_error(make_spec, host):
    path, out = make_spec(kind="capdec", name="nopairs", decoder='offset = true\noffset_split = "heldoutx"')
    with pytest.raises(BuildError, match="decoder.offset_split: offset = true needs image–caption pairs"):
        train(path, host=host, log=lambda m: None)
    assert not (out / "nopairs").exists()


def test_decoding_with_an_offset_that_was_never_computed(lm_run):
    decoder = build_decoder(CapDecParams(lm=str(lm_run), embed_dim=8, prefix_length=2, clip_length=2, mapper_layers=1,
                                         mapper_heads=2, offset=True), BuildContext()).eval()
    with pytest.raises(ValueError, match="offset = true, and this decoder has no modality offset"):
        decoder.decode(torch.randn(2, 8), max_length=3)
