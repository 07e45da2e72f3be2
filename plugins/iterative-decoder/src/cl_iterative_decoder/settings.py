"""The search settings of the iterative decoders (frozen attrs classes, torch-free): what
:func:`~cl_iterative_decoder.magic.magic_search` and :func:`~cl_iterative_decoder.zerocap.zerocap_search` take, and
what the spec tables of ``iterative.magic`` and ``iterative.zerocap`` hold (their params extend these classes)."""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

from .checks import at_least, fraction, positive


@frozen(kw_only=True)
class MagicSettings:
    """The search's knobs (MAGIC's MSCOCO defaults: k = 45, alpha = 0.1, beta = 2.0).

    Attributes:
        k: candidates per step (the LM's k most probable next tokens).
        alpha: weight of the degeneration penalty (and 1 - alpha of the LM probability).
        beta: weight of the text tower's term (0: contrastive search).
        logit_scale: multiplies the cosines before the softmax over candidates (CLIP's 100 in MAGIC).
        window: tokens of generated text the text tower reads (MAGIC: the last 60).
        kv_cache: keep the LM's keys and values between steps (False: run the whole sequence again each step).
    """

    k: int = field(default=45, validator=at_least(1))
    alpha: float = field(default=0.1, validator=fraction)
    beta: float = field(default=2.0, validator=at_least(0))
    logit_scale: float = field(default=100.0, validator=positive)
    window: int = field(default=60, validator=at_least(1))
    kv_cache: bool = True


PICKS = ("clip", "lm")


def _pick(_: Any, attribute: Any, value: str) -> None:
    if value not in PICKS:
        raise ValueError(f"{attribute.name} must be one of {', '.join(map(repr, PICKS))}, got {value!r}")


@frozen(kw_only=True)
class ZeroCapSettings:
    """The search's knobs (ZeroCap's defaults, ``run.py``; see the module docstring).

    Attributes:
        iterations: gradient steps on the context per generated token (0: no steering).
        top: candidates per step and beam that the text tower scores (ZeroCap: 512).
        clip_temperature: divides the similarities in the target's softmax (ZeroCap: 0.01).
        clip_scale: weight of the cross-entropy to the target (ZeroCap: 1).
        ce_scale: weight of the fluency term KL(p_shifted || p_orig) (ZeroCap: 0.2).
        stepsize: size of each normalised gradient step (ZeroCap: 0.3).
        grad_norm_factor: the step divides the gradient by its norm to this power (ZeroCap: 0.9).
        fusion: weight of the shifted distribution in the output, ``p_shifted ** fusion * p_orig ** (1 -
            fusion)`` renormalised (ZeroCap: 0.99).
        beam_size: beams per query (ZeroCap: 5).
        length_penalty: a finished hypothesis scores sum log p / L ** length_penalty (L its tokens, end included).
        end_factor: multiplies the end token's (shifted) probability from the second generated token on (1.01).
        first_end_factor: divides it at the first generated token (ZeroCap: 1.6; 1: no edit).
        window: tokens of generated text the text tower reads (the last ones).
        pick: the caption among the finished hypotheses: ``"clip"`` the most similar to the query through the text
            tower (ZeroCap), ``"lm"`` the best length-normalised LM score (plain beam search's choice).
    """

    iterations: int = field(default=5, validator=at_least(0))
    top: int = field(default=512, validator=at_least(1))
    clip_temperature: float = field(default=0.01, validator=positive)
    clip_scale: float = field(default=1.0, validator=at_least(0))
    ce_scale: float = field(default=0.2, validator=at_least(0))
    stepsize: float = field(default=0.3, validator=at_least(0))
    grad_norm_factor: float = field(default=0.9, validator=at_least(0))
    fusion: float = field(default=0.99, validator=fraction)
    beam_size: int = field(default=5, validator=at_least(1))
    length_penalty: float = 1.0
    end_factor: float = field(default=1.01, validator=positive)
    first_end_factor: float = field(default=1.6, validator=positive)
    window: int = field(default=60, validator=at_least(1))
    pick: str = field(default="clip", validator=_pick)
