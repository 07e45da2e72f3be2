"""Params of the ``imagebind.emoji`` dataset and the ``imagebind.bind`` evaluator (frozen attrs, torch-free:
``cl spec validate`` and ``cl components`` read them without importing torch)."""

from __future__ import annotations

from typing import Literal, get_args

from attrs import field, frozen, validators

from cl_core.api import subset_of

Anchor = Literal["image", "text"]
BOUND = ("audio", "lineart")


def _voices(instance, attribute, value) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value}")


@frozen(kw_only=True)
class EmojiBindParams:
    """``imagebind.emoji``: the emoji concepts of ``datasets.emoji`` with two more modalities, each bound to the
    **anchor** only.

    * ``audio``: each concept's name spoken by espeak-ng (:mod:`cl_imagebind.speech`) in ``voices`` voices (a
      seeded pool of English voices, speeds and pitches), 16 kHz int16 waveforms; the last ``heldout_voices``
      voices of the pool never reach training.
    * ``lineart``: OpenMoji's black line layer of the concept's glyph (:mod:`cl_imagebind.lineart`).

    Training pairs (groups of the ``"train"`` split, one pair type per batch with ``sampler.mix``):
    ``anchor = "image"`` (ImageBind, Girdhar et al., 2023): ``image-audio`` (an image of the concept in each of
    its styles, taking turns over the training voices) and ``image-lineart`` (each style's image with the line
    art); ``anchor = "text"`` (LanguageBind, Zhu et al., 2024): ``text-audio`` and ``text-lineart`` with the
    concept's name as text. No (audio, text) or (line art, text) pair is ever made with the image anchor.

    Evaluation splits (fields ``image``, ``text``, ``audio``, ``lineart``; labels index ``class_names``, the
    concepts' names): ``"voices"``: the *training* concepts spoken in the held-out voices (one row per concept and
    held-out voice; image of the first style); ``"heldout"``: the held-out concepts of ``datasets.emoji``'s split
    (neither their images, names nor sounds were trained on), held-out voices; ``"arithmetic"``: rows
    (image of A, speech of B) whose answer is the concept A + ZWJ + B (e.g. *woman* + *laptop* = *woman
    technologist*), for :class:`~cl_imagebind.evaluation.BindEvaluator`'s embedding arithmetic.

    The split of concepts (``styles``, ``holdout``, ``split_seed``, ``image_size``, ``max_concepts``) means what it
    means in ``datasets.emoji`` — keep them equal to the CLIP run whose towers are the anchor, so "held out" is the
    same set of concepts and the frozen image tower sees the same pixels (and its cached features serve them).

    Attributes:
        styles: art styles of the images (``datasets.emoji``'s).
        holdout: fraction of the concepts held out of training (``datasets.emoji``'s).
        split_seed: seed of the concept split (``datasets.emoji``'s).
        image_size: side in pixels of the colour images (``datasets.emoji``'s; the CLIP run's).
        max_concepts: keep only N concepts of a seeded shuffle (smoke runs, tests).
        openmoji_json: ``openmoji.json`` path (None: fetched, as ``datasets.emoji`` does).
        noto_dir: folder of the Noto PNGs (None: fetched).
        anchor: ``"image"`` or ``"text"``: what the new modalities are paired with in training.
        modalities: which new modalities to make (any of ``"audio"``, ``"lineart"``).
        voices: voices in the pool (>= 2); ``heldout_voices`` of them are held out of training.
        heldout_voices: voices (the pool's last) used only by the evaluation splits (>= 1).
        voice_seed: seed of the voice pool.
        lineart_size: side in pixels of the line-art images.
    """

    styles: tuple[Literal["openmoji", "noto"], ...] = field(default=("openmoji", "noto"),
                                                            validator=subset_of(("openmoji", "noto")))
    holdout: float = field(default=0.2, validator=[validators.ge(0.0), validators.lt(1.0)])
    split_seed: int = 0
    image_size: int = field(default=64, validator=validators.ge(8))
    max_concepts: int | None = field(default=None, validator=validators.optional(validators.ge(2)))
    openmoji_json: str | None = None
    noto_dir: str | None = None
    anchor: Anchor = field(default="image", validator=validators.in_(get_args(Anchor)))
    modalities: tuple[str, ...] = field(default=BOUND, validator=subset_of(BOUND))
    voices: int = field(default=10, validator=validators.ge(2))
    heldout_voices: int = field(default=2, validator=_voices)
    voice_seed: int = 0
    lineart_size: int = field(default=96, validator=validators.ge(16))

    def __attrs_post_init__(self) -> None:
        if self.heldout_voices >= self.voices:
            raise ValueError(f"heldout_voices ({self.heldout_voices}) must be fewer than voices ({self.voices}): "
                             "training needs at least one voice")
        if not self.modalities:
            raise ValueError("modalities must name at least one of 'audio', 'lineart'")


@frozen(kw_only=True)
class BindParams:
    """``imagebind.bind``: the cross-modal table of a bound model (see :mod:`cl_imagebind.evaluation`).

    Attributes:
        splits: evaluation splits (default: every split but ``"train"``).
        ks: K of the recall@K (hit@K) columns.
        modalities: roles to compare (default: every encoder role that the split has a field for).
        anchor: the role whose pairs trained the new modalities (``"image"``; ``"text"`` for LanguageBind):
            direct = new modality -> anchor, emergent = new modality -> the other frozen role.
        examples: retrieval examples written to the plots folder per split (0: none).
    """

    splits: tuple[str, ...] | None = None
    ks: tuple[int, ...] = field(default=(1, 5, 10), validator=validators.deep_iterable(validators.ge(1)))
    modalities: tuple[str, ...] | None = None
    anchor: Anchor = field(default="image", validator=validators.in_(get_args(Anchor)))
    examples: int = field(default=6, validator=validators.ge(0))
