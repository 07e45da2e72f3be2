"""``lm.text``: raw English text for language modelling, with held-out documents (see
:class:`~cl_lm.params.TextParams`).

The corpora are read with ``cl_datasets.corpora``'s readers (the files ``datasets.text-corpus`` tokenises into
words), untokenised: a GCIDE paragraph, a WordNet gloss, a Wikipedia lead, a Lee document or a line of your file
is one document, its whitespace collapsed (GCIDE's ``{...}`` markup braces dropped). The emoji captions are those
``datasets.emoji`` builds for its training concepts (``cl_datasets.emoji``), with its concept split.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cl_core.api import DataError, DataSource, Dataset

from .params import TextParams

_SPACES = re.compile(r"\s+")
_BRACES = re.compile(r"[{}]")


class TextSource(DataSource):
    """Documents as a data source: example ``i`` is ``{"text": texts[i]}``.

    Attributes:
        texts: the documents. origin: ``[N]`` index into ``origin_names`` of each document's source.
    """

    fields = ("text",)

    def __init__(self, texts: Sequence[str], origin: Sequence[int], origin_names: Sequence[str]) -> None:
        self.texts = list(texts)
        self.origin = np.asarray(origin, dtype=np.int64)
        self.origin_names = tuple(origin_names)

    def __len__(self) -> int:
        return len(self.texts)

    def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        n = len(self.texts)
        out = []
        for i in indices:
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"document index {i} out of range for a split of {n} documents")
            out.append(self.texts[i])
        return {"text": out}

    def describe(self) -> str:
        counts = np.bincount(self.origin, minlength=len(self.origin_names))
        chars = sum(len(t) for t in self.texts)
        parts = ", ".join(f"{name} {c:,}" for name, c in zip(self.origin_names, counts) if c)
        return f"{len(self):,} documents, {chars / 1e6:.1f} M characters ({parts})"


class TextData(Dataset):
    """The built ``lm.text`` dataset."""

    def __init__(self, splits: Mapping[str, TextSource], notes: Sequence[str] = ()) -> None:
        self._splits = dict(splits)
        self.notes = tuple(notes)

    def splits(self) -> Mapping[str, DataSource]:
        return self._splits

    def describe(self) -> str:
        text = "; ".join(f"{name}: {src.describe()}" for name, src in self._splits.items())
        return text + ("; " + "; ".join(self.notes) if self.notes else "")


def clean(text: str) -> str:
    """Whitespace collapsed, GCIDE's markup braces dropped, stripped."""
    return _SPACES.sub(" ", _BRACES.sub("", text)).strip()


def _documents(name: str, params: TextParams) -> Iterator[str]:
    """The raw documents of one named corpus (``cl_datasets.corpora``'s readers and file lookup)."""
    from cl_datasets import corpora

    if name == "gcide":
        path = corpora.debian_file("dict-gcide", corpora.GCIDE_FILE, explicit=params.gcide_path, fetch=params.fetch)
        return corpora.gcide_paragraphs(path)
    if name == "wordnet":
        folder = corpora.debian_file("wordnet-base", corpora.WORDNET_DIR, explicit=params.wordnet_dir,
                                     fetch=params.fetch)
        return corpora.wordnet_glosses(folder)
    if name == "wiki-leads":
        from cl_datasets.wiki import load_wiki_leads

        return (d.text for d in load_wiki_leads(params.wiki_path))
    if name == "lee":
        from cl_datasets.wiki import load_lee

        return (d.text for d in load_lee())
    raise DataError(f"unknown text source {name!r}")


def _file_documents(paths: Sequence[str]) -> Iterator[str]:
    from cl_datasets import corpora

    for p in paths:
        for f in corpora.text_files(p):
            yield from corpora.text_file_lines(Path(f))


def _held(text: str, seed: int, holdout: float) -> bool:
    """Whether a document is held out: a pure function of the seed and its text."""
    h = hashlib.blake2b(f"{seed}|{text}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < holdout


def emoji_captions(params: TextParams) -> tuple[list[str], list[str], str]:
    """(captions of the training concepts, captions of the held-out concepts, a note) from ``datasets.emoji``
    built with this dataset's styles, holdout and split seed (so its concept split is the contrastive run's).

    Raises:
        DataError: the emoji data cannot be found or fetched (see ``datasets.emoji``).
    """
    from cl_datasets.emoji import build_emoji
    from cl_datasets.emoji_meta import captions_of
    from cl_datasets.params import EmojiParams

    emoji = build_emoji(EmojiParams(styles=params.emoji_styles, holdout=params.emoji_holdout,
                                    split_seed=params.emoji_split_seed, captions=("annotation",),
                                    openmoji_json=params.emoji_openmoji_json, noto_dir=params.emoji_noto_dir))
    held_names = {c.annotation for c in emoji.heldout_concepts}
    train = [t for c in emoji.train_concepts for t in captions_of(c, params.emoji_captions, params.emoji_templates)]
    held_texts = {t.format(n) for n in held_names for t in ("{}", *params.emoji_templates)}
    train = [t for t in train if t not in held_texts]  # a held-out name never reaches training (datasets.emoji's rule)
    held = [t for c in emoji.heldout_concepts for t in captions_of(c, params.emoji_captions, params.emoji_templates)]
    note = (f"emoji: {len(emoji.train_concepts):,} training concepts ({len(train):,} captions x "
            f"{params.emoji_repeat}), {len(emoji.heldout_concepts):,} held out ({len(held):,} captions)")
    return train, held, note


def build_text(params: TextParams, ctx: Any = None) -> TextData:
    """Factory of ``lm.text``.

    Raises:
        DataError: a corpus that cannot be read or fetched, a file that is not UTF-8, or no training text.
    """
    names = list(params.sources) + (["paths"] if params.paths else [])
    train: list[str] = []
    train_origin: list[int] = []
    held: list[str] = []
    held_origin: list[int] = []
    for k, name in enumerate(names):
        docs = _file_documents(params.paths) if name == "paths" else _documents(name, params)
        for i, raw in enumerate(docs):
            if params.max_documents is not None and i >= params.max_documents:
                break
            text = clean(raw)
            if not text:
                continue
            if _held(text, params.split_seed, params.holdout):
                held.append(text)
                held_origin.append(k)
            else:
                train.append(text)
                train_origin.append(k)
    notes = []
    if len(held) > params.max_heldout:
        order = np.random.default_rng(params.split_seed).permutation(len(held))[: params.max_heldout]
        order.sort()
        notes.append(f"{len(held) - params.max_heldout:,} held-out documents beyond max_heldout left unused")
        held, held_origin = [held[i] for i in order], [held_origin[i] for i in order]
    splits: dict[str, TextSource] = {}
    origin_names = [*names]
    if params.emoji:
        captions, held_captions, note = emoji_captions(params)
        notes.append(note)
        k = len(origin_names)
        origin_names.append("emoji")
        train += captions * params.emoji_repeat
        train_origin += [k] * (len(captions) * params.emoji_repeat)
        if held_captions:
            splits["heldout-captions"] = TextSource(held_captions, [k] * len(held_captions), origin_names)
    if not train:
        raise DataError("lm.text: no training text (every source was empty, or everything was held out)")
    out = {"train": TextSource(train, train_origin, origin_names)}
    if held:
        out["heldout"] = TextSource(held, held_origin, origin_names)
    out.update(splits)
    return TextData(out, notes)
