"""Params of the built-in components (torch-free)."""

from __future__ import annotations

from attrs import field, frozen, validators


@frozen(kw_only=True)
class CosineParams:
    """``core.cosine``: S(q, k) = s * cos(q, k) with logit scale s = 1 / temperature.

    Attributes:
        temperature: initial temperature tau (> 0); the logit scale starts at 1 / tau (CLIP: 0.07).
        learn_temperature: learn log(s) (CLIP) instead of keeping it fixed.
        max_logit_scale: s is clamped to at most this after every optimizer step (CLIP: 100).
    """

    temperature: float = field(default=0.07, validator=validators.gt(0))
    learn_temperature: bool = True
    max_logit_scale: float = field(default=100.0, validator=validators.gt(0))

    def __attrs_post_init__(self) -> None:
        if 1.0 / self.temperature > self.max_logit_scale:
            raise ValueError(
                f"initial logit scale 1/temperature = {1 / self.temperature:g} exceeds max_logit_scale "
                f"= {self.max_logit_scale:g}"
            )


@frozen(kw_only=True)
class DotParams:
    """``core.dot``: S(q, k) = q . k (no normalisation, no temperature)."""


@frozen(kw_only=True)
class ClipLossParams:
    """``core.clip``: CLIP's symmetric cross-entropy over in-batch pairs (Radford et al., 2021).

    Attributes:
        label_aware: when True, other items of a batch with the same label (the same caption or
            concept) are not used as negatives. Default False, as in CLIP and open_clip.
    """

    label_aware: bool = False


@frozen(kw_only=True)
class InfoNCEParams:
    """``core.info-nce``: InfoNCE / multiple-negatives ranking, queries against in-batch candidates
    (van den Oord et al., 2018).

    Attributes:
        symmetric: also score candidates against queries and average the two directions.
        label_aware: same-label candidates are not negatives (see ``core.clip``).
    """

    symmetric: bool = False
    label_aware: bool = False


@frozen(kw_only=True)
class InBatchParams:
    """``core.in-batch``: shuffled batches of positive pairs; the other rows are the negatives.

    Attributes:
        batch_size: pairs per batch (> 0).
        drop_last: drop a last, smaller batch.
        no_duplicate_labels: never put two examples with the same label in one batch (so no
            false negatives; the sentence-transformers NoDuplicatesBatchSampler idea).
    """

    batch_size: int = field(default=256, validator=validators.gt(0))
    drop_last: bool = True
    no_duplicate_labels: bool = False
