"""A trained CoCa from Python, whole or in parts: :func:`load_towers` (the contrastive towers, for zero-shot and
retrieval) and :func:`load_captioner` (images to captions), each one call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cl_core.api import WeightsError, from_pretrained

from .captioner import CoCaCaptioner
from .image import CoCaImage
from .text import CoCaText


def _coca(source: str | Path, device: str, host: Any) -> tuple[Any, CoCaImage, CoCaText, CoCaCaptioner | None]:
    pipeline = from_pretrained(source, host=host, device=device)
    images = [e for e in pipeline.encoders.values() if isinstance(e, CoCaImage)]
    texts = [e for e in pipeline.encoders.values() if isinstance(e, CoCaText)]
    if len(images) != 1 or len(texts) != 1:
        raise WeightsError(f"{source} is not a CoCa run: it needs one coca.image and one coca.text encoder, it has "
                           f"{', '.join(type(e).__name__ for e in pipeline.encoders.values())}")
    decoder = pipeline.decoder if isinstance(pipeline.decoder, CoCaCaptioner) else None
    return pipeline, images[0], texts[0], decoder


def load_towers(source: str | Path, *, device: str = "cpu", host: Any = None) -> tuple[CoCaImage, CoCaText]:
    """The image and text towers of a CoCa run (eval mode): ``image.embed(images)`` and ``text.embed(texts)`` give
    ``[B, N]`` embeddings of one joint space (normalise them and take dot products to score).

    Raises:
        WeightsError: the run is not a CoCa run, or its weights do not load. HubError: a Hub id that cannot be
            fetched.
    """
    _, image, text, _ = _coca(source, device, host)
    return image, text


class Captioner:
    """Images -> captions with a CoCa run's image tower (its captioning pooler) and multimodal decoder."""

    def __init__(self, image: CoCaImage, decoder: CoCaCaptioner) -> None:
        self.image, self.decoder = image, decoder

    @torch.no_grad()
    def caption(self, images: Sequence[Any], *, max_length: int = 32, batch_size: int = 64, **settings: Any
                ) -> list[str]:
        """One caption per image (a list of PIL images, uint8 ``[H, W, 3]`` arrays or image file paths), at most
        ``max_length`` tokens; ``settings`` override the run's decoding (``method="greedy"``, ``beam_size=3``, ...).

        Raises:
            ValueError: no images, one image not in a list, or bad decoding settings. ClError: a path that is not a
                readable image.
        """
        if hasattr(images, "convert") or isinstance(images, (str, Path)):
            raise ValueError("caption() takes a list of images: caption([image])")
        if len(images) == 0:
            raise ValueError("no images given")
        if any(isinstance(item, (str, Path)) for item in images):
            from cl_core.api import read_items

            images = [read_items([Path(i)], "image")[0] if isinstance(i, (str, Path)) else i for i in images]
        device = self.image.position.device
        out: list[str] = []
        for start in range(0, len(images), batch_size):
            inputs = {k: v.to(device) for k, v in self.image.prepare(images[start : start + batch_size]).items()}
            tokens = self.image.encode_states(inputs).tokens
            out += self.decoder.generate(tokens, max_new_tokens=max_length, **settings).texts
        return out


def load_captioner(source: str | Path, *, device: str = "cpu", host: Any = None) -> Captioner:
    """The :class:`Captioner` of a CoCa run (eval mode).

    Raises:
        WeightsError: the run is not a CoCa run or has no ``coca.captioner``; its weights do not load.
    """
    _, image, _, decoder = _coca(source, device, host)
    if decoder is None:
        raise WeightsError(f"{source} has no coca.captioner [decoder] to caption with")
    return Captioner(image, decoder)
