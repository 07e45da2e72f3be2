"""bert-nsp.sentence-encoder: pooling, normalisation, truncation, training, and bad checkpoints/tokenizers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F

from cl_bert_nsp.embed_params import SentenceEncoderParams
from cl_bert_nsp.embed_testing import make_tiny_bert
from cl_bert_nsp.embedding import SentenceEncoder
from cl_core.hf import pool
from cl_core.errors import DataError

TEXTS = ["A dog runs on the grass.", "The stock market fell sharply on Monday after the report.", "", "Paris"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def encoder(folder, **kw) -> SentenceEncoder:
    return SentenceEncoder(SentenceEncoderParams(model=str(folder), **kw))


def test_pool_modes_on_hand_made_states():
    states = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert torch.allclose(pool(states, right, "mean")[1], states[1, :2].mean(0))
    assert torch.equal(pool(states, right, "cls"), states[:, 0])
    assert torch.equal(pool(states, right, "last-token"), torch.stack([states[0, 2], states[1, 1]]))
    assert torch.equal(pool(states, left, "last-token"), states[:, 3])
    with pytest.raises(ValueError, match="at least one token"):
        pool(states, torch.zeros(2, 4, dtype=torch.long), "mean")
    with pytest.raises(ValueError, match="pooling"):
        pool(states, right, "max")


@pytest.mark.parametrize("pooling", ["mean", "cls", "last-token"])
def test_embeddings_are_unit_norm_and_independent_of_padding(tiny_dir, pooling):
    enc = encoder(tiny_dir, pooling=pooling)
    together = enc.embed(TEXTS)
    assert together.shape == (len(TEXTS), 32)
    assert torch.allclose(together.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)
    alone = torch.cat([enc.embed([t]) for t in TEXTS])  # no padding at all
    assert torch.allclose(together, alone, atol=1e-5)


def test_mean_pooling_matches_a_manual_masked_mean(tiny_dir):
    enc = encoder(tiny_dir).eval()
    prepared = enc.prepare(TEXTS[:2])
    with torch.no_grad():
        states = enc.model(**prepared).last_hidden_state
        got = enc.encode(prepared)
    n = int(prepared["attention_mask"][1].sum())
    assert torch.allclose(got[1], F.normalize(states[1, :n].mean(0), dim=0), atol=1e-6)


def test_long_text_is_cut_to_max_length_keeping_sep(tiny_dir):
    enc = encoder(tiny_dir, max_length=16)
    out = enc.prepare(["word " * 100, "short"])
    assert out["input_ids"].shape == (2, 16)
    assert int(out["input_ids"][0, -1]) == enc.tokenizer.sep_id
    assert int(out["attention_mask"][1].sum()) == 3  # [CLS] short [SEP]


def test_max_length_is_capped_by_the_position_table(tmp_path):
    folder = make_tiny_bert(tmp_path / "m", max_position=24)
    assert encoder(folder, max_length=512).max_length == 24


def test_non_string_items_are_refused(tiny_dir):
    with pytest.raises(ValueError, match=r"items\[1\]"):
        encoder(tiny_dir).prepare(["ok", 3])


def test_every_weight_trains(tiny_dir):
    enc = encoder(tiny_dir).train()
    assert all(p.requires_grad for p in enc.parameters())
    before = enc.embed(TEXTS[:2])
    optimizer = torch.optim.SGD(enc.parameters(), lr=1.0)
    q = enc.encode(enc.prepare(TEXTS[:2]))
    k = enc.encode(enc.prepare(TEXTS[2:]))
    F.cross_entropy(20 * q @ k.t(), torch.arange(2)).backward()
    optimizer.step()
    assert not torch.allclose(before, enc.embed(TEXTS[:2]), atol=1e-4)


def test_minilm_shortcut_matches_sentence_transformers():
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    from cl_core.hf import minilm_dir

    ours = SentenceEncoder(SentenceEncoderParams(model="minilm", max_length=256)).embed(TEXTS)
    theirs = SentenceTransformer(str(minilm_dir()), device="cpu").encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(ours, theirs.cpu(), atol=1e-5)


# -- bad checkpoints and tokenizers ----------------------------------------------------------------------


def test_missing_folder_is_named(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match="folder does not exist") as err:  # already when the spec is validated
        SentenceEncoderParams(model=str(missing))
    assert str(missing) in str(err.value)


def test_folder_without_weights(tmp_path, tiny_dir):
    folder = tmp_path / "noweights"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(DataError, match="no weights") as err:
        encoder(folder)
    assert str(folder) in str(err.value)


def test_folder_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match="no config.json"):
        encoder(tmp_path)


def test_pickle_only_checkpoint_is_refused(tmp_path, tiny_dir):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_dir / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(DataError, match="pickled weights"):
        encoder(folder)


def test_weights_that_do_not_fit_the_config(tmp_path, tiny_dir):
    import json
    import shutil

    folder = tmp_path / "mismatch"
    shutil.copytree(tiny_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3  # a layer the weights do not have
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="do not fit"):
        encoder(folder)


def test_tokenizer_larger_than_the_model_vocabulary(tmp_path):
    folder = make_tiny_bert(tmp_path / "small-vocab", vocab_size=1000)
    with pytest.raises(DataError, match="30,522 tokens but the model") as err:
        encoder(folder)
    assert str(folder) in str(err.value)


def test_folder_without_tokenizer(tmp_path):
    folder = make_tiny_bert(tmp_path / "notok", tokenizer=False)
    with pytest.raises(DataError, match="tokenizer"):
        encoder(folder)


def test_separate_tokenizer_folder(tmp_path, tiny_dir):
    folder = make_tiny_bert(tmp_path / "notok2", tokenizer=False)
    enc = SentenceEncoder(SentenceEncoderParams(model=str(folder), tokenizer=str(tiny_dir)))
    assert enc.embed(["hello"]).shape == (1, 32)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_HUB_OFFLINE"):
        encoder("some-org/some-model")


def test_building_encoders_leaves_the_environment_alone(tiny_dir, monkeypatch):
    from cl_bert_nsp.bert import load_bert
    from cl_bert_nsp.params import BertParams

    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = dict(os.environ)
    encoder(tiny_dir).embed(TEXTS)  # tokenizes too
    load_bert(BertParams(hidden_size=32, layers=2, heads=2, intermediate_size=64, block_size=40))
    # tokenizer parallelism (and anything else) is the user's choice for the whole process
    assert dict(os.environ) == before
