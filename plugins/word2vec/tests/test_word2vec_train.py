"""End to end: `cl train` of a tiny spec, seeded reproducibility, export/load, the torch backend, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cl_word2vec
from cl_core.errors import BuildError, ClError, DataError
from cl_core.plugins import default_host
from cl_core.runs import train
from cl_word2vec.vectors import WordVectors

SPEC = Path(__file__).parent / "fixtures" / "word2vec-tiny.toml"


def _train(tmp_path: Path, name: str, *extra: tuple[str, object]):
    overrides = [("run.output_dir", str(tmp_path)), ("run.name", name), *extra]
    return train(SPEC, overrides=overrides, log=lambda m: None)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("w2v"), "a")


def test_tiny_run_reports_the_scores(finished):
    r = finished.results
    for key in ("ws353/spearman", "simlex999/spearman", "analogy/30k/accuracy", "ws353/oov", "analogy/30k/skipped"):
        assert key in r
    assert r["ws353/pairs"] + r["ws353/oov"] == 353
    assert r["analogy/30k/asked"] + r["analogy/30k/skipped"] == 19544


def test_same_seed_same_vectors_and_export(finished, tmp_path):
    again = _train(tmp_path, "b")
    a, b = cl_word2vec.load(finished.run_dir), cl_word2vec.load(again.run_dir)
    assert a.words == b.words and np.array_equal(a.vectors, b.vectors)
    other = cl_word2vec.load(_train(tmp_path, "c", ("run.seed", 1)).run_dir)
    assert not np.array_equal(a.vectors, other.vectors)
    # the vocabulary came back from model.safetensors alone; "the" is the most frequent word of the news corpus
    assert a.words[0] == "the" and a.vocabulary.counts[0] > a.vocabulary.counts[-1]
    out = cl_word2vec.export(finished.run_dir, tmp_path / "v.bin")
    back = WordVectors.load_word2vec_format(out)
    np.testing.assert_array_equal(back.vectors, a.vectors)
    with pytest.raises(KeyError, match="close matches"):
        a.most_similar("governmnet")


def test_learning_moves_related_words_together(finished):
    wv = cl_word2vec.load(finished.run_dir)
    # a fresh init has cosine ~0 for every pair; after 2 epochs frequent neighbours line up
    sims = [wv.similarity("the", w) for w in ("of", "and", "to")]
    assert min(sims) > 0.3


def test_torch_backend_trains_through_the_catalogue_loss(tmp_path):
    r = _train(tmp_path, "t", ("trainer.backend", "torch"), ("trainer.batch_size", 512), ("loss.type", "core.nce"))
    wv = cl_word2vec.load(r.run_dir)
    assert np.isfinite(wv.vectors).all()
    assert min(wv.similarity("the", w) for w in ("of", "and", "to")) > 0.3


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_cbow_learns_on_both_backends(tmp_path, backend):
    r = _train(tmp_path, "cbow", ("sampler.type", "word2vec.cbow"), ("trainer.backend", backend),
               ("trainer.batch_size", 256))
    wv = cl_word2vec.load(r.run_dir)
    assert np.isfinite(wv.vectors).all()
    assert min(wv.similarity("the", w) for w in ("of", "and", "to")) > 0.3


def test_bad_input_before_training(tmp_path):
    with pytest.raises(DataError, match="min_count"):
        _train(tmp_path, "x", ("encoders.word.min_count", 10**6))
    text = SPEC.read_text().split("[trainer]")[0] + "[trainer]\ntype = \"core.adamw\"\n"
    adamw = tmp_path / "adamw.toml"
    adamw.write_text(text)
    with pytest.raises(BuildError, match="word2vec.sgd"):
        train(adamw, overrides=[("run.output_dir", str(tmp_path)), ("run.name", "y")], log=lambda m: None)
    empty = tmp_path / "empty.txt"
    empty.write_text("... !!! ---\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        _train(tmp_path, "z", ("data.sources", []), ("data.paths", [str(empty)]))
    with pytest.raises(ClError, match="data.paths: path does not exist"):
        _train(tmp_path, "w", ("data.paths", [str(tmp_path / "missing.txt")]))
    assert not any(p.is_dir() for p in tmp_path.iterdir())  # no run directory was written


def test_registered_components():
    registry = default_host().registry()
    for kind, name in [("sampler", "word2vec.skip-gram"), ("sampler", "word2vec.cbow"),
                       ("encoder", "word2vec.embedding"), ("encoder", "word2vec.context"),
                       ("trainer", "word2vec.sgd"), ("evaluator", "word2vec.analogy"),
                       ("evaluator", "word2vec.word-similarity"), ("dataset", "datasets.text-corpus")]:
        assert registry.get(kind, name).info.name == name


def test_export_command_line(finished, tmp_path, capsys):
    from cl_word2vec.__main__ import main

    assert main(["export", str(finished.run_dir), str(tmp_path / "v.txt"), "--text"]) == 0
    assert WordVectors.load_word2vec_format(tmp_path / "v.txt", binary=False).words[0] == "the"
    assert main(["export", str(tmp_path / "not-a-run"), str(tmp_path / "x.bin")]) == 1
    assert "not-a-run does not exist" in capsys.readouterr().err


def test_load_takes_a_hub_repository_id(finished, monkeypatch):
    import cl_core.api

    asked = []
    monkeypatch.setattr(cl_core.api, "resolve_source", lambda ref: asked.append(ref) or finished.run_dir)
    assert cl_word2vec.load("org/w2v@v1").words == cl_word2vec.load(finished.run_dir).words
    assert asked == ["org/w2v@v1"]  # the local folder was not sent to the Hub


def test_model_card_says_how_to_query_and_export_the_vectors(finished):
    card = (finished.run_dir / "README.md").read_text(encoding="utf-8")
    assert 'cl_word2vec.load("path/to/this/folder")' in card
    assert "python -m cl_word2vec export path/to/this/folder vectors.bin" in card


@pytest.mark.gpu
def test_torch_backend_on_cuda(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    r = _train(tmp_path, "gpu", ("run.device", "cuda"), ("trainer.backend", "auto"))
    wv = cl_word2vec.load(r.run_dir)
    assert min(wv.similarity("the", w) for w in ("of", "and", "to")) > 0.3


def test_resume_after_an_interrupted_epoch_gives_the_same_vectors(finished, tmp_path):
    class Stop(Exception):
        pass

    def stop_after_first_epoch(loop, step):
        if loop.epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train(SPEC, overrides=[("run.output_dir", str(tmp_path)), ("run.name", "r")], log=lambda m: None,
              callbacks=[stop_after_first_epoch])
    resumed = train(resume=tmp_path / "r", log=lambda m: None)
    a, b = cl_word2vec.load(finished.run_dir), cl_word2vec.load(resumed.run_dir)
    assert np.array_equal(a.vectors, b.vectors)


def test_from_pretrained_loads_a_run_without_its_corpus(finished):
    from cl_core.weights import from_pretrained

    pipeline = from_pretrained(finished.run_dir)  # no dataset: the tables take the saved vocabulary size
    assert pipeline.dataset is None
    saved = cl_word2vec.load(finished.run_dir)
    word = pipeline.encoder("word")
    assert word.vocabulary.words == saved.words
    np.testing.assert_array_equal(pipeline.embed("word", ["the", "of"]).numpy(), saved.vectors[[0, saved.words.index("of")]])
    assert pipeline.encoder("context").weight.shape == word.weight.shape


def test_loading_a_missing_folder_says_it_does_not_exist(tmp_path):
    from cl_core.errors import WeightsError

    with pytest.raises(WeightsError, match="does not exist"):
        cl_word2vec.load(tmp_path / "nope")
    with pytest.raises(WeightsError, match="has no model.safetensors"):
        cl_word2vec.load(tmp_path)


def test_relative_corpus_paths_are_saved_absolute(tmp_path, monkeypatch):
    import shutil

    from cl_core.runs import evaluate_run
    from cl_datasets.wiki import gensim_test_file

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(gensim_test_file("lee_background.cor"), work / "mine.txt")
    monkeypatch.chdir(work)
    result = _train(tmp_path / "runs", "rel", ("data.sources", []), ("data.paths", ["mine.txt"]),
                    ("trainer.epochs", 1))
    import tomllib

    saved = tomllib.loads((result.run_dir / "spec.toml").read_text())
    assert saved["data"]["paths"] == [str(work / "mine.txt")]
    monkeypatch.chdir(tmp_path)  # elsewhere: the saved spec still finds the corpus
    again = evaluate_run(result.run_dir, log=lambda m: None)
    assert again["ws353/spearman"] == pytest.approx(result.results["ws353/spearman"])
