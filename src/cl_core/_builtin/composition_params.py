"""Params of the built-in components that compose pipelines: objectives and the from-run encoder (torch-free)."""

from __future__ import annotations

from typing import Any

from attrs import field, frozen, validators

from ..spec.model import EncoderRef, LossRef, ScorerRef
from ..spec.validators import folder_or_hub_id


def _two_distinct_roles(_: Any, attribute: Any, value: tuple[str, str] | None) -> None:
    if value is not None and (not value[0] or not value[1]):
        raise ValueError(f"'{attribute.name}' names two encoder roles, got {list(value)}")


def _weight(_: Any, attribute: Any, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"'{attribute.name}' must be >= 0, got {value!r}")


_NAME = validators.optional(validators.matches_re(r"^[a-z0-9][a-z0-9_-]*$"))
_SOURCE = folder_or_hub_id()


def _source(_: Any, __: Any, value: str | None) -> None:
    """Checked in ``__attrs_post_init__`` instead: a run that saved the tower's table (``encoder``) loads
    without its source, which may not exist where the run is loaded."""


_source.absolute = _SOURCE.absolute  # type: ignore[attr-defined]  # a run saves an existing folder absolute


@frozen(kw_only=True)
class ContrastiveObjectiveParams:
    """``core.contrastive``: a loss of the catalogue over the scores of two roles (query, candidate).

    Row ``i`` of both roles is a positive pair; when the candidate role is a fixed candidate set (class
    vectors) every query is scored against all candidates and its label names the positive column.

    Attributes:
        roles: ``[query role, candidate role]``; default: the first two ``[encoders.*]`` tables (the same
            role twice when there is one).
        loss: the loss table (``{ type = "core.clip" }``); default: the spec's top-level ``[loss]``.
        scorer: the scorer table; default: the spec's top-level ``[scorer]``, else ``core.cosine`` with
            its defaults.
        weight: factor of this objective in the summed loss.
        name: how its value is logged; default ``<query role>-<candidate role>``.
    """

    roles: tuple[str, str] | None = field(default=None, validator=_two_distinct_roles)
    loss: LossRef | None = None
    scorer: ScorerRef | None = None
    weight: float = field(default=1.0, validator=_weight)
    name: str | None = field(default=None, validator=_NAME)


@frozen(kw_only=True)
class CaptionObjectiveParams:
    """``core.caption``: teacher-forced caption cross-entropy of the spec's ``[decoder]``,
    L = -sum_j log p(c_j | condition, c_<j) (ClipCap, DeCap, CoCa's captioner).

    Attributes:
        condition: the encoder role whose output conditions the decoder (an image role for ClipCap, the
            caption's own text role for the text-only CapDec and DeCap).
        target: the batch role whose raw items are the captions (needs no encoder).
        weight: factor of this objective in the summed loss (CoCa: 2.0 beside a contrastive 1.0).
        name: how its value is logged; default ``caption``.
    """

    condition: str = field(validator=validators.min_len(1))
    target: str = field(default="text", validator=validators.min_len(1))
    weight: float = field(default=1.0, validator=_weight)
    name: str | None = field(default=None, validator=_NAME)


@frozen(kw_only=True)
class FromRunParams:
    """``core.from-run``: an encoder taken from a saved model (a run folder or a Hub id), frozen by default.

    The encoder is rebuilt from the saved ``spec.toml`` with the installed plugins and its weights are
    loaded from the saved ``model.safetensors``. The new run saves its weights and the encoder's table
    (``encoder``, filled in when the run starts), so it loads later without the source.

    Attributes:
        source: a run directory or ``save_pretrained`` folder, or ``org/name[@revision]`` on the Hub.
        role: the encoder role in the source; default: this table's own role.
        freeze: keep every weight fixed (LiT's locked tower; Zhai et al., 2022) and cache embeddings of items
            seen before; false fine-tunes the tower from the saved weights.
        cache: with ``freeze``, serve the embeddings of items seen before from memory.
        encoder: the source encoder's table, as the run saves it (leave unset: it is filled in).
    """

    source: str | None = field(default=None, validator=_source)
    role: str | None = field(default=None, validator=validators.optional(validators.min_len(1)))
    freeze: bool = True
    cache: bool = True
    encoder: EncoderRef | None = None

    def __attrs_post_init__(self) -> None:
        if self.encoder is not None:
            return
        if self.source is None:
            raise ValueError("'source' is required: a run directory or an org/name Hub id")
        try:
            _SOURCE(None, None, self.source)
        except ValueError as exc:
            raise ValueError(f"source: {exc}") from None
