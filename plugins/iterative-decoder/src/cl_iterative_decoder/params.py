"""Params of the ``iterative.*`` decoders (frozen attrs classes, torch-free: what a spec table holds)."""

from __future__ import annotations

from typing import Any

import attrs
from attrs import frozen, validators

from cl_core.api import folder_or_hub_id

from .settings import MagicSettings, ZeroCapSettings

#: the LM the decoders take when a table names none: the newest run of specs/lm-emoji-captions.toml, the English
#: LM adapted to the caption text (as MAGIC adapts GPT-2 to its caption corpus)
DEFAULT_LM = "runs/lm-emoji-captions-*"


def _role(_: Any, attribute: Any, value: str) -> None:
    if not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")


@frozen(kw_only=True, slots=False)  # no slots: the params classes also extend a slotted settings class
class IterativeParams:
    """What every iterative decoder takes: an LM that proposes words and the text tower that judges them.

    Attributes:
        lm: the ``lm.gpt2`` run that proposes the words (a folder, a ``runs/...-*`` glob for the newest, or
            ``org/name[@rev]``). Both methods adapt their LM to caption text first; cl's
            ``specs/lm-emoji-captions.toml`` fine-tunes the English LM on the training concepts' captions.
        text_role: the encoder role whose tower scores the candidates (the contrastive model's text tower); the
            queries are embeddings in its space (a CLIP run's images, an ImageBind run's audio and line art).
        prompt: text every caption continues after ``<bos>`` (not part of the caption; "" starts from ``<bos>``
            alone).
        batch_size: queries decoded together.
        text_batch_size: candidate texts per pass of the text tower.
    """

    lm: str = attrs.field(default=DEFAULT_LM, validator=folder_or_hub_id())
    text_role: str = attrs.field(default="text", validator=_role)
    prompt: str = ""
    batch_size: int = attrs.field(default=64, validator=validators.ge(1))
    text_batch_size: int = attrs.field(default=512, validator=validators.ge(1))


@frozen(kw_only=True)
class MagicParams(IterativeParams, MagicSettings):
    """``iterative.magic``: MAGIC's magic search (Su et al., 2022, "Language Models Can See: Plugging Visual
    Controls in Text Generation"): the LM proposes its ``k`` most probable next tokens, each is scored (1 - alpha)
    p(v) - alpha * (SimCTG degeneration penalty) + beta * softmax(logit_scale * cos(query, text tower(text + v))),
    and the best is kept (:mod:`cl_iterative_decoder.magic`). The fields are :class:`IterativeParams`' and the
    search's :class:`~cl_iterative_decoder.settings.MagicSettings` (MAGIC's MSCOCO defaults), which the decoder
    passes to the search as they are.
    """


@frozen(kw_only=True)
class ZeroCapParams(IterativeParams, ZeroCapSettings):
    """``iterative.zerocap``: ZeroCap (Tewel et al., CVPR 2022, "ZeroCap: Zero-Shot Image-to-Text Generation for
    Visual-Semantic Arithmetic"): beam search of the LM whose past keys and values are shifted, token by token, by
    gradient steps toward the text tower's similarity to the query, with a fluency term, and the final beam picked
    by similarity (:mod:`cl_iterative_decoder.zerocap`). The fields are :class:`IterativeParams`' and the search's
    :class:`~cl_iterative_decoder.settings.ZeroCapSettings` (ZeroCap's ``run.py`` defaults).
    """
