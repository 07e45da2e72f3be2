"""specs/text-embed-tiny.toml end to end with a tiny random BERT: train, start-of-training metrics, export from the run."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

from cl_bert_nsp.embed_testing import make_tiny_bert
from cl_core.errors import ClError, DataError, SpecError
from cl_core.runs import format_results, train

SPEC = Path(__file__).resolve().parents[3] / "specs" / "text-embed-tiny.toml"


def test_tiny_spec_trains_compares_and_exports(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    model = make_tiny_bert(tmp_path / "tiny")
    try:
        result = train(SPEC, overrides=[("encoders.query.model", str(model)), ("trainer.lr", 1e-3),
                                         ("run.output_dir", str(tmp_path)), ("run.name", "run")], log=lambda _: None)
    except DataError as exc:  # the Wikipedia wheel is not installed here
        pytest.skip(str(exc))
    r, start = result.results, result.start_results
    assert result.steps == 3
    assert start is not None and set(start) == set(r)  # eval_on_start: every evaluator before step 1 too
    for key in ("retrieval/ndcg@10", "clustering/v_measure", "dedup/f1"):
        assert 0.0 <= r[key] <= 1.0 and 0.0 <= start[key] <= 1.0
    assert r["retrieval/ndcg@10"] != start["retrieval/ndcg@10"]  # lr 1e-3 for 3 steps moves a random BERT
    assert f"{start['retrieval/ndcg@10']:.4f}" in format_results(r, start)

    from cl_bert_nsp.export import to_sentence_transformers
    from cl_core.weights import from_pretrained

    card = (result.run_dir / "README.md").read_text(encoding="utf-8")  # the card's own export recipe
    assert 'to_sentence_transformers("path/to/this/folder", "st-model", role="query")' in card
    out = to_sentence_transformers(result.run_dir, tmp_path / "st", role="query")
    from cl_core.atomic import default_mode

    assert out.stat().st_mode & 0o777 == default_mode(directory=True)  # not mkdtemp's owner-only 0700
    assert (out / "model.safetensors").stat().st_mode & 0o777 == default_mode()
    assert card.count("to_sentence_transformers(") == 1  # the shared "text" role is the same module
    with pytest.raises(ClError, match="already exists"):
        to_sentence_transformers(tmp_path / "not-loaded", out)  # refused before loading anything
    texts = ["Paris is the capital of France.", "A cat."]
    ours = from_pretrained(result.run_dir).embed("query", texts)
    theirs = st.SentenceTransformer(str(out), device="cpu").encode(texts, convert_to_tensor=True).cpu()
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_a_missing_checkpoint_folder_fails_before_training(tmp_path):
    with pytest.raises((DataError, SpecError)) as err:
        train(SPEC, overrides=[("encoders.query.model", str(tmp_path / "missing")),
                               ("run.output_dir", str(tmp_path / "runs"))], log=lambda _: None)
    assert "missing" in str(err.value)
    assert not (tmp_path / "runs").exists()


def test_cl_spec_validate_reports_a_missing_model_folder(tmp_path):
    from click.testing import CliRunner

    from cl_core import cli

    spec = tmp_path / "spec.toml"
    text = SPEC.read_text(encoding="utf-8")
    assert 'model = "minilm"' in text
    spec.write_text(text.replace('model = "minilm"', 'model = "./no-such-model"', 1), encoding="utf-8")
    result = CliRunner().invoke(cli.main, ["spec", "validate", str(spec)])
    assert result.exit_code == 1
    assert "encoders.query.model: folder does not exist" in result.output and "Traceback" not in result.output
