"""Params of the ``iterative.*`` decoders (frozen attrs classes, torch-free: what a spec table holds)."""

from __future__ import annotations

from typing import Any, Literal

import attrs
from attrs import frozen, validators

from cl_core.api import folder_or_hub_id

from .checks import at_least, fraction, positive

#: the LM the decoders take when a table names none: the newest run of specs/lm-emoji-captions.toml, the English
#: LM adapted to the caption text (as MAGIC adapts GPT-2 to its caption corpus)
DEFAULT_LM = "runs/lm-emoji-captions-*"


def _role(_: Any, attribute: Any, value: str) -> None:
    if not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")


@frozen(kw_only=True)
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
class MagicParams(IterativeParams):
    """``iterative.magic``: MAGIC's magic search (Su et al., 2022, "Language Models Can See: Plugging Visual
    Controls in Text Generation"): the LM proposes its ``k`` most probable next tokens, each is scored (1 - alpha)
    p(v) - alpha * (SimCTG degeneration penalty) + beta * softmax(logit_scale * cos(query, text tower(text + v))),
    and the best is kept (:mod:`cl_iterative_decoder.magic`). See :class:`IterativeParams` for the shared fields.

    Attributes:
        k: candidates per step (MAGIC, MSCOCO: 45).
        alpha: degeneration penalty weight (MAGIC: 0.1).
        beta: weight of the text tower's term (MAGIC: 2.0; 0 is contrastive search).
        logit_scale: multiplies the cosines in the softmax over candidates (CLIP's 100, as MAGIC uses).
        window: tokens of the generated text the text tower reads (MAGIC: the last 60).
    """

    k: int = attrs.field(default=45, validator=at_least(1))
    alpha: float = attrs.field(default=0.1, validator=fraction)
    beta: float = attrs.field(default=2.0, validator=at_least(0))
    logit_scale: float = attrs.field(default=100.0, validator=positive)
    window: int = attrs.field(default=60, validator=at_least(1))


@frozen(kw_only=True)
class ZeroCapParams(IterativeParams):
    """``iterative.zerocap``: ZeroCap (Tewel et al., CVPR 2022, "ZeroCap: Zero-Shot Image-to-Text Generation for
    Visual-Semantic Arithmetic"): beam search of the LM whose past keys and values are shifted, token by token, by
    gradient steps toward the text tower's similarity to the query, with a fluency term, and the final beam picked
    by similarity (:mod:`cl_iterative_decoder.zerocap`; ZeroCap's ``run.py`` defaults). See
    :class:`IterativeParams` for the shared fields.

    Attributes:
        iterations: gradient steps on the context per generated token (ZeroCap: 5; 0 is the LM's beam search).
        top: candidates per step and beam that the text tower scores (ZeroCap: 512).
        clip_temperature: divides the similarities in the target's softmax (ZeroCap: 0.01).
        clip_scale: weight of the cross-entropy to the target (ZeroCap: 1).
        ce_scale: weight of the fluency term KL(p_shifted || p_orig) (ZeroCap: 0.2).
        stepsize: size of each normalised gradient step (ZeroCap: 0.3).
        grad_norm_factor: the step divides the gradient by its norm to this power (ZeroCap: 0.9).
        fusion: weight of the shifted distribution in the output, p_shifted ** fusion * p_orig ** (1 - fusion),
            renormalised (ZeroCap: 0.99).
        beam_size: beams per query (ZeroCap: 5).
        length_penalty: a finished beam scores sum log p / L ** length_penalty (L its tokens, the end included).
        end_factor: multiplies the end token's probability from the second generated token on (ZeroCap: 1.01).
        first_end_factor: divides it at the first generated token (ZeroCap: 1.6).
        window: tokens of the generated text the text tower reads (the last ones).
        pick: the caption among the finished beams: ``"clip"`` the most similar to the query through the text tower
            (ZeroCap), ``"lm"`` the best length-normalised LM score.
    """

    iterations: int = attrs.field(default=5, validator=at_least(0))
    top: int = attrs.field(default=512, validator=at_least(1))
    clip_temperature: float = attrs.field(default=0.01, validator=positive)
    clip_scale: float = attrs.field(default=1.0, validator=at_least(0))
    ce_scale: float = attrs.field(default=0.2, validator=at_least(0))
    stepsize: float = attrs.field(default=0.3, validator=at_least(0))
    grad_norm_factor: float = attrs.field(default=0.9, validator=at_least(0))
    fusion: float = attrs.field(default=0.99, validator=fraction)
    beam_size: int = attrs.field(default=5, validator=at_least(1))
    length_penalty: float = 1.0
    end_factor: float = attrs.field(default=1.01, validator=positive)
    first_end_factor: float = attrs.field(default=1.6, validator=positive)
    window: int = attrs.field(default=60, validator=at_least(1))
    pick: Literal["clip", "lm"] = "clip"
