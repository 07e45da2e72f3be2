"""Params of the built-in components (torch-free).

Every class is the full set of spec keys of one ``core.*`` component; field validators raise errors that
name the field and the expected range, so a bad spec is reported at its TOML path.
"""

from __future__ import annotations

from typing import Any, Literal

from attrs import field, frozen, validators

Views = Literal["pair", "single", "joint"]
Implementation = Literal["auto", "direct", "tiled"]

#: Score-matrix entries (Q x C) above which InfoNCE/CLIP tile by default: 2^22 = 2048 x 2048. On CPU the
#: tiled form was as fast as the direct one from N = 1,024 (benchmarks/losses.py); it holds O(N) memory.
TILED_ABOVE = 2**22


def _positive_or_unset(_: Any, attribute: Any, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"'{attribute.name}' must be > 0 (or left unset), got {value!r}")


def _non_negative(_: Any, attribute: Any, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"'{attribute.name}' must be >= 0, got {value!r}")


# -- scorers ------------------------------------------------------------------------------------------


@frozen(kw_only=True)
class ScaleParams:
    """Temperature fields shared by every built-in scorer: ``S = s * raw(q, k)`` with logit scale
    ``s = 1 / temperature``.

    Attributes:
        temperature: initial temperature tau (> 0); unset means no scale (s = 1).
        learn_temperature: learn ``log s`` (CLIP) instead of keeping it fixed; needs a temperature.
        max_logit_scale: s is clamped to at most this in every forward pass and after every optimizer
            step (CLIP / open_clip: 100).
    """

    temperature: float | None = field(default=None, validator=_positive_or_unset)
    learn_temperature: bool = False
    max_logit_scale: float = field(default=100.0, validator=validators.gt(0))

    def __attrs_post_init__(self) -> None:
        if self.temperature is None:
            if self.learn_temperature:
                raise ValueError("learn_temperature = true needs a temperature (the initial value)")
            return
        if 1.0 / self.temperature > self.max_logit_scale:
            raise ValueError(
                f"initial logit scale 1/temperature = {1 / self.temperature:g} exceeds max_logit_scale "
                f"= {self.max_logit_scale:g}"
            )


@frozen(kw_only=True)
class CosineParams(ScaleParams):
    """``core.cosine``: S(q, k) = s * cos(q, k) with logit scale s = 1 / temperature.

    Attributes:
        temperature: initial temperature tau (> 0); the logit scale starts at 1 / tau (CLIP: 0.07).
        learn_temperature: learn log(s) (CLIP) instead of keeping it fixed.
        max_logit_scale: s is clamped to at most this after every optimizer step (CLIP: 100).
    """

    temperature: float | None = field(default=0.07, validator=_positive_or_unset)
    learn_temperature: bool = True


@frozen(kw_only=True)
class DotParams(ScaleParams):
    """``core.dot``: S(q, k) = s * (q . k) (no normalisation; s = 1 unless a temperature is set).

    Attributes:
        temperature: optional temperature tau (> 0), s = 1 / tau.
        learn_temperature: learn log(s).
        max_logit_scale: clamp of s.
    """


@frozen(kw_only=True)
class NegL1Params(ScaleParams):
    """``core.neg-l1``: S(q, k) = -s * ||q - k||_1 (Manhattan distance; energy = distance).

    Attributes:
        temperature: optional temperature tau (> 0), s = 1 / tau.
        learn_temperature: learn log(s).
        max_logit_scale: clamp of s.
    """


@frozen(kw_only=True)
class NegL2Params(ScaleParams):
    """``core.neg-l2``: S(q, k) = -s * ||q - k||_2 (Euclidean distance; finite gradient at distance 0).

    Attributes:
        temperature: optional temperature tau (> 0), s = 1 / tau.
        learn_temperature: learn log(s).
        max_logit_scale: clamp of s.
    """


@frozen(kw_only=True)
class NegSqL2Params(ScaleParams):
    """``core.neg-sq-l2``: S(q, k) = -s * ||q - k||_2^2 (squared Euclidean distance).

    Attributes:
        temperature: optional temperature tau (> 0), s = 1 / tau.
        learn_temperature: learn log(s).
        max_logit_scale: clamp of s.
    """


@frozen(kw_only=True)
class BilinearParams(ScaleParams):
    """``core.bilinear``: S(q, k) = s * q^T A k with a learnable A (the CPC critic, van den Oord et al. 2018).

    Attributes:
        dim: embedding width N (A is N x N); unset = the first encoder's ``embed_dim``.
        rank: unset = a full A initialised to the identity (so training starts from the dot product);
            r = a low-rank A = U V^T with U, V of shape [N, r], initialised to the same random
            orthonormal basis (A starts as a rank-r projection).
        temperature: optional temperature tau (> 0), s = 1 / tau.
        learn_temperature: learn log(s).
        max_logit_scale: clamp of s.
    """

    dim: int | None = field(default=None, validator=_positive_or_unset)
    rank: int | None = field(default=None, validator=_positive_or_unset)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.rank is not None and self.dim is not None and self.rank > self.dim:
            raise ValueError(f"rank = {self.rank} exceeds dim = {self.dim}; rank must be in [1, dim]")


# -- losses -------------------------------------------------------------------------------------------


@frozen(kw_only=True)
class InfoNCEParams:
    """``core.info-nce``: InfoNCE / multiple-negatives ranking, queries against in-batch candidates
    (van den Oord et al., 2018).

    Attributes:
        symmetric: also score candidates against queries and average the two directions.
        label_aware: same-label candidates are not negatives (see ``core.clip``).
        implementation: "direct" builds the [Q, C] score matrix; "tiled" never holds it (row blocks,
            recomputed in backward; dot/cosine/bilinear scorers only); "auto" picks "tiled" when
            Q * C > ``tiled_above``.
        tiled_above: score-matrix entries above which "auto" tiles (default 2^22 = 2048 x 2048).
        tile_mb: memory budget of one block of float32 scores in the tiled form (MiB).
    """

    symmetric: bool = False
    label_aware: bool = False
    implementation: Implementation = "auto"
    tiled_above: int = field(default=TILED_ABOVE, validator=validators.gt(0))
    tile_mb: float = field(default=64.0, validator=validators.gt(0))


@frozen(kw_only=True)
class ClipLossParams:
    """``core.clip``: CLIP's symmetric cross-entropy over in-batch pairs (Radford et al., 2021).

    Attributes:
        label_aware: when True, other items of a batch with the same label (the same caption or
            concept) are not used as negatives. Default False, as in CLIP and open_clip.
        implementation: "direct", "tiled" (memory-bounded) or "auto" (see ``core.info-nce``).
        tiled_above: score-matrix entries above which "auto" tiles.
        tile_mb: memory budget of one block of float32 scores in the tiled form (MiB).
    """

    label_aware: bool = False
    implementation: Implementation = "auto"
    tiled_above: int = field(default=TILED_ABOVE, validator=validators.gt(0))
    tile_mb: float = field(default=64.0, validator=validators.gt(0))


@frozen(kw_only=True)
class SigLIPParams:
    """``core.siglip``: pairwise sigmoid loss with a learnable bias (Zhai et al., 2023, "Sigmoid Loss
    for Language Image Pre-Training"). The scale t is the scorer's (use ``core.cosine`` with
    temperature 0.1, i.e. t = 10, as in the paper).

    Attributes:
        bias_init: initial bias b (paper: -10).
        learn_bias: learn b.
        label_aware: same-label pairs count as positives (+1) instead of negatives.
    """

    bias_init: float = -10.0
    learn_bias: bool = True
    label_aware: bool = False


@frozen(kw_only=True)
class SupConParams:
    """``core.supcon``: supervised contrastive loss (Khosla et al., 2020).

    Attributes:
        form: "out" = the mean over positives outside the log (L_out, the paper's better form);
            "in" = inside the log (L_in).
        views: "joint" = Khosla's multi-view batch: queries and candidates are two views, all 2B
            views are anchors and candidates (self excluded); without labels this is SimCLR's NT-Xent
            (``core.nt-xent``, which also ignores labels).
            "pair" = queries against candidates only (own pair + same label are positives).
            "single" = one view: queries against themselves, self excluded, positives by label.
    """

    form: Literal["out", "in"] = "out"
    views: Views = "joint"


@frozen(kw_only=True)
class NTXentParams:
    """``core.nt-xent``: SimCLR's normalized temperature-scaled cross-entropy (Chen et al., 2020, "A Simple
    Framework for Contrastive Learning of Visual Representations"; PML's ``NTXentLoss``). The 2B views of a
    batch (queries and candidates) are each scored against the 2B - 1 others; the positive is the other
    view of the same item, every other view a negative, labels or not (for label positives use
    ``core.supcon``). The temperature is the scorer's: ``core.cosine`` with ``learn_temperature = false``
    and temperature 0.5 (SimCLR's default; 0.1 for large batches). No parameters.
    """


@frozen(kw_only=True)
class ContrastiveParams:
    """``core.contrastive``: Hadsell, Chopra & LeCun (2006) pair loss, squared with a margin:
    ``1/2 d^2`` for positives, ``1/2 max(0, m - d)^2`` for negatives, d = distance_offset - S.

    Attributes:
        margin: m (>= 0), in the scorer's distance units (``core.neg-l2``: Euclidean distance).
        views: "pair", "single" or "joint" (see ``core.supcon``).
        distance_offset: c in d = c - S (0 for the distance scorers; 1 with a cosine scorer of
            temperature 1 gives the cosine distance 1 - cos).
    """

    margin: float = field(default=1.0, validator=_non_negative)
    views: Views = "pair"
    distance_offset: float = 0.0


@frozen(kw_only=True)
class ContrastiveHingeParams:
    """``core.contrastive-hinge``: pair loss with separate margins (not squared):
    ``max(0, d - pos_margin)`` for positives, ``max(0, neg_margin - d)`` for negatives, each averaged per
    anchor, then over the anchors with a positive: pytorch-metric-learning's ``ContrastiveLoss`` with
    ``reducer=PerAnchorReducer(MeanReducer())``, not its default ``AvgNonZeroReducer`` (values differ).

    Attributes:
        pos_margin: positives closer than this cost nothing (>= 0).
        neg_margin: negatives farther than this cost nothing (>= 0).
        views: "pair", "single" or "joint" (see ``core.supcon``).
        distance_offset: c in d = c - S.
    """

    pos_margin: float = field(default=0.0, validator=_non_negative)
    neg_margin: float = field(default=1.0, validator=_non_negative)
    views: Views = "pair"
    distance_offset: float = 0.0


@frozen(kw_only=True)
class TripletParams:
    """``core.triplet``: ``max(0, d(a, p) - d(a, n) + margin)`` (Weinberger & Saul 2009; Schroff et al.
    2015; Hermans et al. 2017), d = distance_offset - S.

    Attributes:
        margin: >= 0, in the scorer's distance units.
        mining: "all" = every valid triplet, mean over the active (> 0) ones (Hermans' BA!=0; PML's
            ``TripletMarginLoss`` defaults, ``AvgNonZeroReducer``);
            "hard" = hardest positive and hardest negative per anchor (batch-hard), mean over the anchors
            (PML: ``BatchHardMiner`` with ``reducer=MeanReducer()``);
            "semi-hard" = per (anchor, positive), the closest negative farther than the positive, else
            the farthest negative (FaceNet).
        views: "pair", "single" or "joint" (see ``core.supcon``).
        distance_offset: c in d = c - S.
    """

    margin: float = field(default=0.2, validator=_non_negative)
    mining: Literal["all", "hard", "semi-hard"] = "hard"
    views: Views = "pair"
    distance_offset: float = 0.0


@frozen(kw_only=True)
class NCEParams:
    """``core.nce``: noise-contrastive estimation (Gutmann & Hyvarinen 2010; Mnih & Teh 2012): logistic
    regression of data against noise on ``S - log(k * p_noise)``. The noise log-probabilities come with
    the targets (:class:`cl_core._builtin.nce.NoiseTargets`); without them the noise is uniform over
    the candidates of the batch.
    """


@frozen(kw_only=True)
class NegativeSamplingParams:
    """``core.negative-sampling``: word2vec's negative sampling (Mikolov et al., 2013):
    ``-log sigma(S+) - sum log sigma(-S-)``, no noise correction.
    """


@frozen(kw_only=True)
class MemoryQueueParams:
    """``core.memory-queue``: InfoNCE against the batch plus a FIFO queue of past candidate embeddings
    (MoCo, He et al. 2020; XBM, Wang et al. 2020). The queue is updated after the loss, with the
    candidates of every rank, so all ranks hold the same queue.

    Attributes:
        size: queue length (past candidates kept).
        dim: embedding width; unset = the last encoder's ``embed_dim``.
        label_aware: queued candidates with a query's label are not its negatives.
    """

    size: int = field(default=4096, validator=validators.gt(0))
    dim: int | None = field(default=None, validator=_positive_or_unset)
    label_aware: bool = False


# -- samplers -----------------------------------------------------------------------------------------


# -- encoders -----------------------------------------------------------------------------------------


@frozen(kw_only=True)
class SharedEncoderParams:
    """``core.shared``: the encoder of an earlier role, reused for this role (one set of weights for both
    sides of a bi-encoder, as sentence-transformers and SimCLR do).

    Attributes:
        role: an encoder role defined earlier in the spec.
    """

    role: str = field(validator=validators.min_len(1))


@frozen(kw_only=True)
class InBatchParams:
    """``core.in-batch``: shuffled batches of positive pairs; the other rows are the negatives.

    Attributes:
        batch_size: pairs per batch (> 0).
        drop_last: drop a last, smaller batch.
        no_duplicate_labels: never put two examples with the same label in one batch (so no
            false negatives; the sentence-transformers NoDuplicatesBatchSampler idea).
        mix: for a source made of several datasets (groups): ``"none"`` mixes them in every batch;
            ``"round-robin"`` draws each batch from one group, groups taking turns (the epoch ends when the
            smallest group runs out); ``"proportional"`` draws each batch from one group, groups chosen in
            proportion to their number of batches (sentence-transformers' multi-dataset batch samplers).
    """

    batch_size: int = field(default=256, validator=validators.gt(0))
    drop_last: bool = True
    no_duplicate_labels: bool = False
    mix: Literal["none", "round-robin", "proportional"] = "none"


@frozen(kw_only=True)
class MPerClassParams:
    """``core.m-per-class``: batches of ``batch_size / m`` distinct labels with ``m`` examples each (for
    supervised losses; the PML MPerClassSampler idea). A label with fewer than m examples is repeated.

    Attributes:
        batch_size: examples per batch, a multiple of m.
        m: examples per label in a batch (> 0).
        batches_per_epoch: unset = len(source) // batch_size.
    """

    batch_size: int = field(default=256, validator=validators.gt(0))
    m: int = field(default=4, validator=validators.gt(0))
    batches_per_epoch: int | None = field(default=None, validator=_positive_or_unset)

    def __attrs_post_init__(self) -> None:
        if self.batch_size % self.m:
            raise ValueError(f"batch_size = {self.batch_size} must be a multiple of m = {self.m}")


@frozen(kw_only=True)
class HardNegativesParams:
    """``core.hard-negatives``: in-batch pairs plus, per query, mined hard negatives appended to the
    candidate side (ANCE / sentence-transformers ``mine_hard_negatives`` idea).

    Negatives are mined with a scorer over one vector per example: the ``embedding_field`` of the
    source (e.g. precomputed embeddings), or vectors given to ``sampler.mine(...)``.

    Attributes:
        batch_size: pairs per batch (> 0).
        drop_last: drop a last, smaller batch.
        num_negatives: mined negatives per query (> 0).
        embedding_field: source field holding one vector per example, used for mining.
        candidate_field: input role that receives the negatives ("" = the pipeline's candidate role, the
            second encoder of the spec; without a spec, the last source field that is not the embedding field).
        scorer: similarity used for mining.
        skip_top: ignore this many most similar examples (likely unlabelled duplicates).
        pool: negatives are drawn at random from the next ``pool`` most similar examples.
        exclude_same_label: never mine an example with the query's label.
    """

    batch_size: int = field(default=256, validator=validators.gt(0))
    drop_last: bool = True
    num_negatives: int = field(default=1, validator=validators.gt(0))
    embedding_field: str = "embedding"
    candidate_field: str = ""
    scorer: Literal["cosine", "dot", "neg-l2"] = "cosine"
    skip_top: int = field(default=0, validator=validators.ge(0))
    pool: int = field(default=10, validator=validators.gt(0))
    exclude_same_label: bool = True

    def __attrs_post_init__(self) -> None:
        if self.pool < self.num_negatives:
            raise ValueError(f"pool = {self.pool} must be >= num_negatives = {self.num_negatives}")
