"""``imagebind.emoji``: emoji concepts in four modalities — image, name, spoken name, line art — for ImageBind.

See :class:`~cl_imagebind.params.EmojiBindParams` for the splits and pair types. The images and names are
``datasets.emoji``'s (same concepts, same held-out split, same pixels); speech comes from
:func:`cl_imagebind.speech.speak` and line art from :func:`cl_imagebind.lineart.draw_lineart`, both cached in the
user cache folder, so a second build takes seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from cl_core.api import DataError, DataSource, Dataset

from .params import EmojiBindParams

log = logging.getLogger(__name__)

ZWJ = "200D"


class BindSource(DataSource):
    """Examples of several modalities, each field a column of indices into a shared store.

    Args:
        columns: field -> (``[N]`` int64 rows of the store, ``fetch(row) -> item``).
        labels: ``[N]`` int64 labels indexing ``class_names``.
        class_names: label -> name.
        groups: ``[N]`` int64 pair type of each example (training), or None.
        group_names: group index -> name (e.g. ``"image-audio"``).

    ``get`` returns only the fields an example's group has when ``group_fields`` is given (a batch of one pair
    type carries exactly its two roles).
    """

    def __init__(self, columns: Mapping[str, tuple[np.ndarray, Callable[[int], Any]]], labels: np.ndarray,
                 class_names: Sequence[str], *, groups: np.ndarray | None = None,
                 group_names: Sequence[str] | None = None,
                 group_fields: Sequence[tuple[str, ...]] | None = None,
                 meta: Mapping[str, np.ndarray] | None = None) -> None:
        self._columns = {name: (np.asarray(rows, dtype=np.int64), fetch) for name, (rows, fetch) in columns.items()}
        self.fields = tuple(columns)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.groups = None if groups is None else np.asarray(groups, dtype=np.int64)
        self.group_names = None if group_names is None else list(group_names)
        self._group_fields = None if group_fields is None else [tuple(f) for f in group_fields]
        self.meta = dict(meta or {})
        for name, (rows, _) in self._columns.items():
            if rows.shape != self.labels.shape:
                raise ValueError(f"column {name!r} has {rows.shape} rows for {self.labels.shape} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        indices = list(indices)
        fields = self.fields
        if self._group_fields is not None and indices:
            kinds = {int(self.groups[i]) for i in indices}
            if len(kinds) != 1:
                names = sorted(self.group_names[k] for k in kinds)
                raise DataError(f"one batch mixes the pair types {', '.join(names)}: set sampler.mix = "
                                "'proportional' (or 'round-robin') so each batch is one pair type")
            fields = self._group_fields[kinds.pop()]
        out = {}
        for name in fields:
            rows, fetch = self._columns[name]
            out[name] = [fetch(int(rows[i])) for i in indices]
        return out


def _image_fetch(store: np.ndarray) -> Callable[[int], Image.Image]:
    store.flags.writeable = False
    return lambda row: Image.fromarray(store[row])


def _list_fetch(items: Sequence[Any]) -> Callable[[int], Any]:
    return items.__getitem__


def compositions(hexcodes: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(a, b, z)`` hexcodes where concept z is the ZWJ sequence ``a 200D b`` of two concepts a and b of the
    list (FE0F ignored when matching), e.g. woman + laptop = woman technologist."""
    def plain(code: str) -> str:
        return "-".join(p for p in code.split("-") if p != "FE0F")

    by_plain = {plain(h): h for h in hexcodes}
    out = []
    for z in hexcodes:
        parts = plain(z).split("-")
        if parts.count(ZWJ) != 1:
            continue
        cut = parts.index(ZWJ)
        a, b = "-".join(parts[:cut]), "-".join(parts[cut + 1:])
        if a in by_plain and b in by_plain:
            out.append((by_plain[a], by_plain[b], z))
    return out


class EmojiBindDataset(Dataset):
    """The built ``imagebind.emoji`` dataset (see :class:`~cl_imagebind.params.EmojiBindParams`).

    Attributes:
        emoji: the underlying ``datasets.emoji`` dataset (concepts, split, images).
        voices: the voice pool; ``train_voices`` and ``heldout_voices`` partition it.
        timings: seconds spent on each part of the build (``images``, ``speech``, ``lineart``).
    """

    def __init__(self, params: EmojiBindParams, *, speak: Callable | None = None,
                 draw_lineart: Callable | None = None) -> None:
        from cl_datasets.emoji import build_emoji
        from cl_datasets.params import EmojiParams

        from . import lineart, speech

        speak = speak or speech.speak
        draw_lineart = draw_lineart or lineart.draw_lineart
        self.params = p = params
        self.timings: dict[str, float] = {}
        start = time.perf_counter()
        self.emoji = build_emoji(EmojiParams(styles=p.styles, holdout=p.holdout, split_seed=p.split_seed,
                                             image_size=p.image_size, max_concepts=p.max_concepts,
                                             openmoji_json=p.openmoji_json, noto_dir=p.noto_dir,
                                             captions=("annotation",), templates=("{}",)))
        self.timings["images"] = time.perf_counter() - start
        train_c, held_c = list(self.emoji.train_concepts), list(self.emoji.heldout_concepts)
        everything = train_c + held_c
        names = [c.annotation for c in everything]
        codes = [c.hexcode for c in everything]
        index = {h: i for i, h in enumerate(codes)}  # concept -> row of every per-concept store

        self.voices = speech.voice_pool(p.voices, p.voice_seed)
        self.train_voices = self.voices[: p.voices - p.heldout_voices]
        self.heldout_voices = self.voices[p.voices - p.heldout_voices:]
        audio: list[np.ndarray] = []
        audio_row = np.zeros((0, 0), dtype=np.int64)
        if "audio" in p.modalities:
            t0 = time.perf_counter()
            spoken = speak(names, self.voices)  # [voice][concept]
            self.timings["speech"] = time.perf_counter() - t0
            audio = [wave for per_voice in spoken for wave in per_voice]
            audio_row = np.arange(len(audio), dtype=np.int64).reshape(len(self.voices), len(names))
        lines = np.zeros((0, p.lineart_size, p.lineart_size, 3), np.uint8)
        if "lineart" in p.modalities:
            t0 = time.perf_counter()
            lines = draw_lineart(codes, p.lineart_size, allow_blank=True)
            self.timings["lineart"] = time.perf_counter() - t0

        # The colour images are the emoji dataset's own store (the CLIP run's pixels), not a copy.
        fetch = {"image": _image_fetch(self.emoji.images), "text": _list_fetch(names), "audio": _list_fetch(audio),
                 "lineart": _image_fetch(lines)}
        self._splits: dict[str, DataSource] = {
            "train": self._train(train_c, index, audio_row, fetch),
        }
        first_style = p.styles[0]
        n_held = len(self.heldout_voices)
        for split, concepts in (("voices", train_c), ("heldout", held_c)):
            if not concepts:
                continue
            rows = [index[c.hexcode] for c in concepts for _ in range(n_held)]
            voice = [p.voices - n_held + v for _ in concepts for v in range(n_held)]
            columns = {"image": (np.array([self._image_row(codes[r], first_style) for r in rows]), fetch["image"]),
                       "text": (np.array(rows), fetch["text"])}
            if "audio" in p.modalities:
                columns["audio"] = (np.array([audio_row[v, r] for v, r in zip(voice, rows)]), fetch["audio"])
            if "lineart" in p.modalities:
                columns["lineart"] = (np.array(rows), fetch["lineart"])
            labels = np.repeat(np.arange(len(concepts)), n_held)
            self._splits[split] = BindSource(columns, labels, [c.annotation for c in concepts],
                                             meta={"concept": np.array([codes[r] for r in rows]),
                                                   "voice": np.array([self.voices[v].label for v in voice])})
        if "audio" in p.modalities:
            arithmetic = self._arithmetic(codes, names, index, audio_row, fetch, first_style)
            if arithmetic is not None:
                self._splits["arithmetic"] = arithmetic
        self.build_seconds = time.perf_counter() - start
        log.info("imagebind.emoji: %s (%.1f s: %s)", self.describe(), self.build_seconds,
                 ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))

    # -- parts ---------------------------------------------------------------------------------------------
    def _image_row(self, code: str, wanted: str) -> int:
        """Row of ``self.emoji.images`` of concept ``code`` in style ``wanted``, else in its first style (a
        concept may lack one style)."""
        styles = self.emoji.concept_styles[code]
        return self.emoji.image_row(code, wanted if wanted in styles else styles[0])

    def _train(self, concepts: Sequence[Any], index: dict[str, int], audio_row: np.ndarray,
               fetch: dict) -> BindSource:
        p = self.params
        anchor = p.anchor
        cols: dict[str, list[int]] = {"image": [], "text": [], "audio": [], "lineart": []}
        labels, groups, group_names, group_fields = [], [], [], []
        n_train_voices = len(self.train_voices)

        def add(group: int, label: int, **rows: int) -> None:
            for name in cols:
                cols[name].append(rows.get(name, 0))
            labels.append(label)
            groups.append(group)

        for modality in p.modalities:
            g = len(group_names)
            group_names.append(f"{anchor}-{modality}")
            group_fields.append((anchor, modality))
            for label, c in enumerate(concepts):
                r = index[c.hexcode]
                styles = self.emoji.concept_styles[c.hexcode]
                if modality == "audio":
                    for v in range(n_train_voices):
                        rows = {"audio": int(audio_row[v, r]), "text": r,
                                "image": self.emoji.image_row(c.hexcode, styles[v % len(styles)])}
                        add(g, label, **rows)
                elif anchor == "image":
                    for style in styles:
                        add(g, label, image=self.emoji.image_row(c.hexcode, style), lineart=r)
                else:
                    add(g, label, text=r, lineart=r)
        used = {f for fields in group_fields for f in fields}
        columns = {name: (np.array(cols[name]), fetch[name]) for name in cols if name in used}
        return BindSource(columns, np.array(labels), [c.annotation for c in concepts], groups=np.array(groups),
                          group_names=group_names, group_fields=group_fields)

    def _arithmetic(self, codes: list[str], names: list[str], index: dict[str, int], audio_row: np.ndarray,
                    fetch: dict, style: str) -> BindSource | None:
        """Rows (image of a, speech of b) labelled with z = a ZWJ b, over every concept's name as classes;
        ``meta["gallery"]`` are the rows of the answer images (one per concept) to retrieve among."""
        triples = compositions(codes)
        if not triples:
            return None
        voice = self.params.voices - 1  # a held-out voice
        columns = {
            "image": (np.array([self._image_row(a, style) for a, _, _ in triples]), fetch["image"]),
            "audio": (np.array([audio_row[voice, index[b]] for _, b, _ in triples]), fetch["audio"]),
            "text": (np.array([index[b] for _, b, _ in triples]), fetch["text"]),
        }
        gallery = np.array([self._image_row(c, style) for c in codes])
        source = BindSource(columns, np.array([index[z] for _, _, z in triples]), names,
                            meta={"a": np.array([t[0] for t in triples]), "b": np.array([t[1] for t in triples]),
                                  "z": np.array([t[2] for t in triples]), "gallery": gallery})
        source.gallery = lambda: [fetch["image"](int(r)) for r in gallery]  # the answer images, label order
        return source

    # -- Dataset -------------------------------------------------------------------------------------------
    def splits(self) -> Mapping[str, DataSource]:
        return self._splits

    def describe(self) -> str:
        train = self._splits["train"]
        per_group = ", ".join(f"{name}: {int((train.groups == g).sum())}" for g, name in enumerate(train.group_names))
        rest = "; ".join(f"{name}: {len(s)}" for name, s in self._splits.items() if name != "train")
        return (f"{len(self.emoji.train_concepts)} train concepts, {len(self.emoji.heldout_concepts)} held out, "
                f"{len(self.train_voices)} + {len(self.heldout_voices)} voices; train pairs {per_group}; {rest}")


def build_emoji_bind(params: EmojiBindParams, ctx=None) -> EmojiBindDataset:
    """Factory of ``imagebind.emoji``.

    Raises:
        DataError: the emoji data cannot be found, espeak-ng is missing, or glyphs cannot be drawn.
    """
    return EmojiBindDataset(params)
