"""Export to a sentence-transformers folder: SentenceTransformer(folder) embeds exactly like the encoder."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from cl_bert_nsp.embed_params import SentenceEncoderParams
from cl_bert_nsp.embed_testing import make_tiny_bert
from cl_bert_nsp.embedding import SentenceEncoder
from cl_bert_nsp.export import to_sentence_transformers
from cl_core.errors import ClError

TEXTS = ["A dog runs on the grass.", "The stock market fell sharply on Monday. " * 8, "", "Paris"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-export"), seed=3)


def trained_encoder(folder, **kw) -> SentenceEncoder:
    """A tiny encoder after one optimizer step (so exported weights differ from the folder's)."""
    enc = SentenceEncoder(SentenceEncoderParams(model=str(folder), max_length=24, **kw)).train()
    optimizer = torch.optim.SGD(enc.parameters(), lr=0.5)
    q, k = enc.encode(enc.prepare(TEXTS[:2])), enc.encode(enc.prepare(TEXTS[2:]))
    torch.nn.functional.cross_entropy(20 * q @ k.t(), torch.arange(2)).backward()
    optimizer.step()
    return enc.eval()


@pytest.mark.parametrize("pooling", ["mean", "cls", "last-token"])
def test_sentence_transformers_loads_the_export_and_agrees(tmp_path, tiny_dir, pooling):
    st = pytest.importorskip("sentence_transformers")
    enc = trained_encoder(tiny_dir, pooling=pooling)
    ours = enc.embed(TEXTS)
    out = to_sentence_transformers(enc, tmp_path / "st")
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert json.loads((out / "sentence_bert_config.json").read_text())["max_seq_length"] == 24
    assert (out / "model.safetensors").is_file() and not (out / "pytorch_model.bin").exists()
    model = st.SentenceTransformer(str(out), device="cpu")
    theirs = model.encode(TEXTS, convert_to_tensor=True).cpu()
    assert torch.allclose(ours, theirs, atol=1e-5)
    fresh = SentenceEncoder(SentenceEncoderParams(model=str(tiny_dir), max_length=24, pooling=pooling)).embed(TEXTS)
    assert not torch.allclose(fresh, theirs, atol=1e-3)  # the trained weights were exported, not the folder's


def test_export_refuses_to_overwrite_and_names_bad_sources(tmp_path, tiny_dir):
    enc = SentenceEncoder(SentenceEncoderParams(model=str(tiny_dir)))
    (tmp_path / "taken").mkdir()
    with pytest.raises(ClError, match="already exists"):
        to_sentence_transformers(enc, tmp_path / "taken")
    assert to_sentence_transformers(enc, tmp_path / "taken", overwrite=True).joinpath("modules.json").is_file()
    with pytest.raises(ClError, match="cannot export"):
        to_sentence_transformers(object(), tmp_path / "x")

    class NotOurs:
        encoders = {"image": torch.nn.Linear(2, 2)}

    with pytest.raises(ClError, match="no bert-nsp.sentence-encoder"):
        to_sentence_transformers(NotOurs(), tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
