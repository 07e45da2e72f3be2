"""``captions.clipre``: the decoder contract, nearest-caption retrieval, its memory saved with the model, and a
spec with it that trains nothing (``cl eval SPEC``)."""

from __future__ import annotations

import pytest
import torch

from cl_core.api import BuildContext, DataError, DecoderContract, SpecError
from cl_captions.clipre import CLIPRe
from cl_captions.params import CLIPReParams


def _toy_context(**kw) -> BuildContext:
    from cl_core.testing import toy

    chars = toy.build_chars(toy.ToyCharsParams(embed_dim=4), None)
    data = toy.build_pairs(toy.ToyPairsParams(captions=True), None)
    return BuildContext(encoders={"text": chars}, dataset=data, **kw)


class TestCLIPReContract(DecoderContract):
    name = "captions.clipre"
    embed_dim = 4

    @pytest.fixture
    def build_context(self):
        return _toy_context()


def test_returns_the_nearest_memory_caption():
    memory = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    clipre = CLIPRe(["a red heart", "a dog face with eyes", "two cats", "a second dog"], memory * 3)
    query = torch.tensor([[0.1, 0.9, 0.2], [5.0, 0.0, 1.0], [0.0, 0.1, 2.0]])
    assert clipre.decode(query, max_length=10) == ["a dog face with eyes", "a red heart", "two cats"]
    assert clipre.decode(query, max_length=2) == ["a dog", "a red", "two cats"]  # cut to max_length words
    index, cosine = clipre.nearest(query)
    assert index.tolist() == [1, 0, 2]  # a tie between rows 1 and 3 goes to the first
    assert cosine[0] == pytest.approx(0.9 / (0.01 + 0.81 + 0.04) ** 0.5)
    with pytest.raises(ValueError, match="3-dim text embeddings, got 5-dim"):
        clipre.decode(torch.ones(2, 5), max_length=4)
    assert not CLIPRe.trainable and list(clipre.parameters()) == []  # nothing to train


def test_memory_is_the_distinct_captions_embedded_by_the_text_tower():
    from cl_captions.clipre import build_clipre

    ctx = _toy_context()
    clipre = build_clipre(CLIPReParams(), ctx)
    train = ctx.dataset.splits()["train"]
    texts = train.get(range(len(train)))["text"]
    assert clipre.captions == list(dict.fromkeys(texts))  # distinct, first-seen order
    expected = torch.nn.functional.normalize(ctx.encoders["text"].embed(clipre.captions), dim=-1)
    torch.testing.assert_close(clipre.memory, expected)
    # decoding a memory caption's own text embedding returns it
    some = clipre.captions[:5]
    assert clipre.decode(ctx.encoders["text"].embed(some), max_length=8) == some


def test_files_splits_and_restrict_to(tmp_path):
    from cl_captions.clipre import build_clipre

    ctx = _toy_context()
    (tmp_path / "more.txt").write_text("a red heart\n\n  a dog face  \nclass 3\n", encoding="utf-8")
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "part.txt").write_text("CLASS  3\nA Dog Face\n", encoding="utf-8")
    files_only = build_clipre(CLIPReParams(splits=(), files=(str(tmp_path / "more.txt"),)), ctx)
    assert files_only.captions == ["a red heart", "a dog face", "class 3"]
    both = build_clipre(CLIPReParams(files=(str(tmp_path / "more.txt"),), restrict_to=(str(tmp_path / "lm"),)), ctx)
    assert both.captions == ["class 3", "a dog face"]  # kept in memory order: the split's captions first
    (tmp_path / "other.txt").write_text("nothing in common\n", encoding="utf-8")
    with pytest.raises(DataError, match="none of the .* memory captions is a line"):
        build_clipre(CLIPReParams(restrict_to=(str(tmp_path / "other.txt"),)), ctx)
    with pytest.raises(DataError, match="no split 'nowhere'"):
        build_clipre(CLIPReParams(splits=("nowhere",)), ctx)
    with pytest.raises(DataError, match="no field 'caption'"):
        build_clipre(CLIPReParams(field="caption"), ctx)
    with pytest.raises(ValueError, match="needs captions"):
        CLIPReParams(splits=())


SPEC = """
format = 1
[run]
device = "cpu"
[data]
type = "toy.pairs"
captions = true
classes = 6
size = 48
[encoders.a]
type = "toy.linear"
[encoders.text]
type = "toy.chars"
[decoder]
type = "captions.clipre"
{decoder}
[[evaluate]]
type = "captions.metrics"
role = "a"
meteor = false
tokenizer = "python"
timing = false
{extra}
"""


def test_saved_with_the_model_and_loaded_without_the_data(tmp_path, toy_host):
    from cl_core.api import from_pretrained, save_pretrained
    from cl_core.build import build_pipeline
    from cl_core.spec import loads_spec

    registry = toy_host.registry()
    pipeline = build_pipeline(loads_spec(SPEC.format(decoder="", extra=""), registry), registry).eval()
    probe = [torch.randn(8).numpy() for _ in range(12)]
    before = pipeline.caption("a", probe, max_length=6)
    state = pipeline.state_dict()
    assert {"decoder.memory", "decoder.memory_text", "decoder.memory_offsets"} <= set(state)
    save_pretrained(pipeline, tmp_path / "clipre")
    loaded = from_pretrained(tmp_path / "clipre", host=toy_host)  # no dataset built: the memory comes from the file
    assert loaded.dataset is None
    assert loaded.decoder.captions == pipeline.decoder.captions
    torch.testing.assert_close(loaded.decoder.memory, pipeline.decoder.memory)
    assert loaded.caption("a", probe, max_length=6) == before


def test_a_spec_with_clipre_trains_nothing_and_is_evaluated(tmp_path, toy_host):
    from cl_core.api import evaluate_run, train

    spec = tmp_path / "clipre.toml"
    spec.write_text(SPEC.format(decoder="", extra=""))
    results = evaluate_run(spec, host=toy_host, log=lambda m: None)
    assert results["captions/heldout/count"] > 0 and "captions/heldout/cider_d" in results
    with pytest.raises(SpecError, match="nothing to train"):
        train(spec, host=toy_host, log=lambda m: None)


def test_spec_mistakes_are_located(tmp_path, toy_host):
    from cl_core.build import build_pipeline
    from cl_core.spec import loads_spec

    registry = toy_host.registry()
    with pytest.raises(SpecError, match=r"decoder\.text_role: no encoder role 'words'; encoder roles: a, text"):
        build_pipeline(loads_spec(SPEC.format(decoder='text_role = "words"', extra=""), registry), registry)
    trains = SPEC.format(decoder="", extra='[sampler]\ntype = "core.in-batch"\n[loss]\ntype = "core.clip"\n'
                                          '[scorer]\ntype = "core.cosine"')
    with pytest.raises(SpecError, match=r"decoder\.text_role: the encoder of role 'text' trains in this spec"):
        build_pipeline(loads_spec(trains, registry), registry)
