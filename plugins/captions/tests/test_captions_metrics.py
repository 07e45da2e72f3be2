"""``captions.metrics``: the evaluator contract, its numbers against a hand computation on a toy pipeline, the
references a split gives, and what it says about what it cannot compute."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cl_core.api import BuildError, ClError, DataError, DataSource, Dataset, EvalContext, EvaluationWarning, EvaluatorContract
from cl_captions.metrics import CaptionMetrics
from cl_captions.params import MetricsParams
from cl_captions.references import references
from cl_captions.scores import clip_score, coco_scores

FAST = dict(role="a", tokenizer="python", meteor=False)


class TestMetricsContract(EvaluatorContract):
    name = "captions.metrics"

    @pytest.fixture
    def params(self):
        return MetricsParams(**FAST, timing=False)  # seconds_per_100 is a wall-clock time: not reproducible

    @pytest.fixture
    def pipeline(self, toy_pipeline):
        return toy_pipeline()


def ctx(plots=None):
    return EvalContext(device=torch.device("cpu"), plots_dir=plots, batch_size=8)


def evaluate(pipeline, **params):
    return CaptionMetrics(MetricsParams(**{**FAST, **params})).evaluate(pipeline, pipeline.dataset, ctx())


def test_numbers_match_a_hand_computation(toy_pipeline):
    pipeline = toy_pipeline()
    source = pipeline.dataset.splits()["heldout"]
    items = source.get(range(len(source)))
    captions = pipeline.caption("a", items["a"], max_length=32)
    names = [f"class {label}" for label in source.labels]  # the toy split's texts and class names
    expected = coco_scores(captions, [[n] for n in names], tokenizer="python", meteor=False)
    cos = clip_score(pipeline.embed("a", items["a"]), pipeline.embed("text", captions))
    out = evaluate(pipeline)
    assert {k: out[f"captions/heldout/{k}"] for k in expected} == expected
    assert out["captions/heldout/clipscore"] == pytest.approx(cos)
    assert out["captions/heldout/exact_name"] == pytest.approx(np.mean([c == n for c, n in zip(captions, names)]))
    assert out["captions/heldout/count"] == len(source)
    assert out["captions/heldout/seconds_per_100"] > 0
    assert not any(k.startswith("captions/train") for k in out)  # evaluation splits only


def test_own_decoder_table_and_name(toy_pipeline):
    """A decoder table of the evaluator (CLIPRe over the training captions) is used instead of the spec's."""
    pipeline = toy_pipeline('[[evaluate]]\ntype = "captions.metrics"\nname = "clipre"\nrole = "a"\n'
                            'decoder = { type = "captions.clipre" }\nmeteor = false\ntokenizer = "python"')
    evaluator = pipeline.evaluators[0]
    assert type(evaluator.decoder).__name__ == "CLIPRe"
    source = pipeline.dataset.splits()["heldout"]
    items = source.get(range(len(source)))
    expected = evaluator.decoder.decode(pipeline.embed("a", items["a"]), max_length=32)
    out = evaluator.evaluate(pipeline, pipeline.dataset, ctx())
    names = [f"class {label}" for label in source.labels]
    assert out["clipre/heldout/exact_name"] == pytest.approx(np.mean([c == n for c, n in zip(expected, names)]))
    assert set(expected) <= set(pipeline.dataset.splits()["train"].get(range(48))["text"])


def test_max_examples_captions_an_evenly_spaced_subset(toy_pipeline):
    out = evaluate(toy_pipeline(), max_examples=5)
    assert out["captions/heldout/count"] == 5


def test_spice_is_skipped_with_one_line(toy_pipeline):
    with pytest.warns(EvaluationWarning, match="SPICE is not computed"):
        evaluate(toy_pipeline())


def test_without_java_meteor_is_left_out_with_the_install_hint(toy_pipeline, monkeypatch):
    import cl_captions.tokenize as module

    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    pipeline = toy_pipeline()
    with pytest.warns(EvaluationWarning, match=r"no `java`.*METEOR is not computed.*apt-get install "
                                               r"default-jre-headless"):
        out = evaluate(pipeline, meteor=True, tokenizer="auto")
    assert "captions/heldout/meteor" not in out and "captions/heldout/cider_d" in out
    with pytest.raises(BuildError, match="ptb-java.*needs Java"):
        evaluate(pipeline, tokenizer="ptb-java")


class _Split(DataSource):
    fields = ("a", "text")

    def __init__(self, texts, labels=None, names=None, descriptions=None):
        self.texts = list(texts)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.class_names, self.class_descriptions = names, descriptions

    def __len__(self):
        return len(self.texts)

    def get(self, indices):
        return {"a": [np.full(8, i, dtype=np.float32) for i in indices], "text": [self.texts[i] for i in indices]}


class _Data(Dataset):
    def __init__(self, **splits):
        self._splits = splits

    def splits(self):
        return self._splits


def test_references_are_every_caption_of_the_concept_then_name_then_descriptions():
    split = _Split(["a red heart", "red heart", "a dog", "a red heart"], labels=[0, 0, 1, 0],
                   names=["red heart", "dog face"], descriptions=[("red heart, emotion",), ()])
    kinds = ("text", "name", "descriptions")
    assert references(split, [0, 2], kinds, "text") == [
        ["a red heart", "red heart", "red heart, emotion"],  # both texts of label 0 (once each), name, description
        ["a dog", "dog face"],
    ]
    assert references(split, [2], ("name",), "text") == [["dog face"]]
    assert references(split, [1], ("descriptions", "text"), "text") == [["red heart, emotion", "a red heart",
                                                                         "red heart"]]
    unlabelled = _Split(["a cat", "a dog"])
    assert references(unlabelled, [1, 0], kinds, "text") == [["a dog"], ["a cat"]]  # its own text


def test_splits_without_references_or_names(toy_pipeline):
    pipeline = toy_pipeline()
    data = _Data(train=_Split(["x"]), plain=_Split(["class 1", "class 2", "class 3"]),
                 nameless=_Split(["", "", ""], labels=[0, 1, 2]))
    evaluator = CaptionMetrics(MetricsParams(**FAST, timing=False))
    with pytest.warns(EvaluationWarning) as caught:
        out = evaluator.evaluate(pipeline, data, ctx())
    messages = [str(w.message) for w in caught]
    assert any("'plain' has no labels or class names: exact_name not reported" in m for m in messages)
    assert any("'nameless' has 3 example(s) without references" in m and "skipped" in m for m in messages)
    assert "captions/plain/bleu1" in out and "captions/plain/exact_name" not in out
    assert not any(k.startswith("captions/nameless/") for k in out)
    named = CaptionMetrics(MetricsParams(**FAST, splits=("nameless",)))
    with pytest.raises(DataError, match="without references"):
        named.evaluate(pipeline, data, ctx())
    with pytest.raises(DataError, match="split\\(s\\) nowhere not found"):
        CaptionMetrics(MetricsParams(**FAST, splits=("nowhere",))).evaluate(pipeline, data, ctx())


def test_spec_mistakes_are_located(toy_host):
    from cl_core.api import SpecError
    from cl_core.build import build_pipeline
    from cl_core.spec import loads_spec

    base = """
[data]
type = "toy.pairs"
captions = true
[encoders.a]
type = "toy.linear"
[encoders.text]
type = "toy.chars"
{decoder}
[[evaluate]]
type = "captions.metrics"
role = "{role}"
"""
    registry = toy_host.registry()
    decoder = '[decoder]\ntype = "toy.class-names"'
    with pytest.raises(SpecError, match=r"evaluate\[0\]: captions.metrics captions with the spec's \[decoder\]"):
        build_pipeline(loads_spec(base.format(decoder="", role="a"), registry), registry)
    with pytest.raises(SpecError, match=r"evaluate\[0\]\.role: no encoder role 'image'; encoder roles: a, text"):
        build_pipeline(loads_spec(base.format(decoder=decoder, role="image"), registry), registry)


def test_a_pipeline_without_a_decoder_is_a_clear_error(toy_pipeline):
    pipeline = toy_pipeline()
    pipeline.decoder = None
    with pytest.raises(BuildError, match="has no \\[decoder\\]"):
        evaluate(pipeline)


def test_the_example_figure(tmp_path):
    from PIL import Image

    from cl_captions.plots import as_image, plot_captions

    images = [as_image(Image.new("RGB", (16, 16), (255, 0, 0))), as_image(np.zeros((8, 8, 3), np.uint8))]
    assert as_image(np.zeros(8, np.float32)) is None and as_image("text") is None
    path = plot_captions(tmp_path / "p" / "captions-x.png", images, ["a red square", ""],
                         [["red square", "a red square"], ["black"]], title="t")
    assert path.is_file() and path.stat().st_size > 1000


def test_no_warning_is_raised_twice_per_message(toy_pipeline):
    pipeline = toy_pipeline()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        evaluate(pipeline)
        evaluate(pipeline)
    assert sum("SPICE" in str(w.message) for w in caught) == 1


def test_references_of_the_emoji_held_out_splits():
    """On real data (cl-datasets' committed emoji slice): a held-out example's references are its annotation (the
    split's text and class name, once) and its class description "<annotation>, <subgroup>"."""
    pytest.importorskip("cl_datasets")
    from cl_datasets.emoji import build_emoji
    from cl_datasets.testing import emoji_fixture_params

    dataset = build_emoji(emoji_fixture_params(holdout=0.25, image_size=16))
    split = dataset.splits()["heldout-noto"]
    refs = references(split, range(len(split)), ("text", "name", "descriptions"), "text")
    for concept, got in zip(dataset.heldout_concepts, refs):
        assert got == [concept.annotation, f"{concept.annotation}, {concept.subgroup}"]
    train = dataset.splits()["train"]  # several captions per concept (one per style): each kept once
    assert all(len(r) == len(set(r)) for r in references(train, range(len(train)), ("text",), "text"))


def test_a_java_failure_is_a_warning_not_a_failed_evaluation(toy_pipeline, monkeypatch):
    import cl_captions.scores as scores
    import cl_captions.tokenize as tokenize

    def broken(*args, **kwargs):
        raise RuntimeError("java died")

    monkeypatch.setattr(tokenize.shutil, "which", lambda name: "/usr/bin/java")  # as if Java were installed
    monkeypatch.setattr(tokenize, "ptb_java", broken)
    monkeypatch.setattr(scores, "meteor_score", broken)
    pipeline = toy_pipeline()
    with pytest.warns(EvaluationWarning) as caught:
        out = evaluate(pipeline, tokenizer="auto", meteor=True)
    messages = [str(w.message) for w in caught]
    assert any("java died; tokenised by the pure-Python PTB rules instead" in m for m in messages)
    assert any("java died; METEOR left out" in m for m in messages)
    assert "captions/heldout/meteor" not in out
    assert out["captions/heldout/bleu1"] == evaluate(pipeline, tokenizer="python")["captions/heldout/bleu1"]
    with pytest.raises(ClError, match="java died"):  # asked for Java explicitly: no silent fallback
        evaluate(pipeline, tokenizer="ptb-java")
