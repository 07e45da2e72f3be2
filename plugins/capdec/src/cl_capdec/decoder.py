"""``capdec.clipcap`` and ``capdec.capdec``: a prefix captioner over a frozen contrastive tower.

One module, :class:`PrefixCaptioner`, serves both (see :class:`~cl_capdec.params.ClipCapParams` and
:class:`~cl_capdec.params.CapDecParams`):

* the condition embedding ``[B, N]`` is L2-normalised (``normalize``); CapDec adds its training noise here
  (:func:`~cl_capdec.space.noise_injection`, training mode only) and, when decoding, the modality offset;
* a mapper (:mod:`cl_capdec.mapper`) makes K prefix embeddings ``[B, K, D]``;
* the causal LM (``lm.gpt2`` of ``cl-lm``, loaded with ``cl_lm.load_lm`` and saved inside this decoder) reads
  ``[hard prompt tokens (entities only); K prefix embeddings; caption tokens]``;
* the caption loss is the token cross-entropy of the caption tokens (end token included) after the prefix,
  L = -1/T sum_j log p(c_j | prefix, c_<j), the mean over the batch's T target tokens (ClipCap's ``train.py``:
  ``logits[:, K - 1 : -1]`` against the caption tokens);
* decoding continues the prefix with ``cl_lm.generate`` (beam search by default, as ClipCap's ``generate_beam``).

State saved with the model (``decoder.*``): the LM (weights and tokenizer) and its configuration
(``lm_config``, JSON bytes, so the run loads without the LM's run), the mapper, the space it was trained in
(``space_digest`` [2]: digests of the condition tower and of the decoded tower; ``space_width``; ``space_source``,
where the towers came from), CapDec's ``offset`` [N] with ``offset_ready``, and the entity vocabulary
(``entity_embeddings`` [E, N], ``entity_text`` / ``entity_offsets``, UTF-8 names).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_core.api import BuildError, DataError, Decoder, EncoderOutput, LossOutput, pack_texts, spec_problem, unpack_texts

from .mapper import MLPMapper, TransformerMapper
from .params import CapDecParams, ClipCapParams
from .space import modality_offset, noise_injection, tower_digest

#: Label of a position that is not a target (PyTorch's ignore index).
IGNORE = -100


def _text(blob: Tensor) -> str:
    return blob.detach().cpu().numpy().tobytes().decode("utf-8")


def _bytes(text: str) -> Tensor:
    data = text.encode("utf-8")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone() if data else torch.zeros(0, dtype=torch.uint8)


def lm_config(lm: Any) -> dict[str, Any]:
    """The JSON-able configuration that rebuilds ``lm`` (an ``lm.gpt2`` decoder) without its run."""
    return {"params": attrs.asdict(lm.params), "rows": int(lm.model.config.vocab_size)}


def lm_from_config(config: Mapping[str, Any]) -> Any:
    """An ``lm.gpt2`` decoder of the shapes ``config`` records (random weights, a stand-in tokenizer: a load
    replaces both)."""
    from cl_lm.model import GPT2Decoder
    from cl_lm.params import GPT2Params
    from cl_lm.tokenizer import bytes_tokenizer

    values = dict(config["params"])
    values["stop"] = tuple(values.get("stop") or ())
    return GPT2Decoder(GPT2Params(**values), bytes_tokenizer(), rows=int(config["rows"]))


class PrefixCaptioner(Decoder):
    """ClipCap / CapDec (module docstring).

    Args:
        params: :class:`~cl_capdec.params.ClipCapParams` or :class:`~cl_capdec.params.CapDecParams`.
        lm: the ``lm.gpt2`` decoder (``cl_lm.load_lm``); it becomes the submodule ``lm``.
        in_dim: N, the width of the condition embeddings.

    Attributes:
        params: the params.
        lm: the language model.
        mapper: :class:`~cl_capdec.mapper.MLPMapper` or :class:`~cl_capdec.mapper.TransformerMapper`.
    """

    trainable = True
    reads_tokens = False

    def __init__(self, params: ClipCapParams, lm: Any, in_dim: int) -> None:
        super().__init__()
        self.params = params
        self.in_dim = int(in_dim)
        self.lm = lm
        self.mapper = self._make_mapper(lm.width)
        self._set_lm_trainable()
        self.register_buffer("lm_config", _bytes(json.dumps(lm_config(lm), sort_keys=True)))
        self.register_buffer("space_digest", torch.zeros(2, dtype=torch.int64))
        self.register_buffer("space_width", torch.tensor(self.in_dim, dtype=torch.int64))
        self.register_buffer("space_source", torch.zeros(0, dtype=torch.uint8))
        self.register_buffer("offset", torch.zeros(self.in_dim))
        self.register_buffer("offset_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("entity_embeddings", torch.zeros(0, self.in_dim))
        self.register_buffer("entity_text", torch.zeros(0, dtype=torch.uint8))
        self.register_buffer("entity_offsets", torch.zeros(1, dtype=torch.int64))
        self._entity_names: list[str] | None = []
        self._room: int | None = None  # tokens of the longest entity prompt (prompt_room), once known

    # -- structure ------------------------------------------------------------------------------------------
    def _make_mapper(self, width: int) -> nn.Module:
        p = self.params
        if p.mapper == "mlp":
            return MLPMapper(self.in_dim, width, p.prefix_length)
        return TransformerMapper(self.in_dim, width, p.prefix_length, p.clip_length, p.mapper_layers,
                                 p.mapper_heads, p.mapper_mlp_ratio)

    def _set_lm_trainable(self) -> None:
        self.lm.set_trainable(None if self.params.lm_trains else 0)

    @property
    def prefix_length(self) -> int:
        """K, the soft prefix embeddings."""
        return self.params.prefix_length

    @property
    def context(self) -> int:
        """The LM's context: hard prompt + K + caption tokens at most."""
        return self.lm.context

    @property
    def tokenizer(self) -> Any:
        """The LM's tokenizer (:class:`cl_lm.tokenizer.LMTokenizer`)."""
        return self.lm.tokenizer

    @property
    def entity_names(self) -> list[str]:
        """The entity vocabulary (empty without entities)."""
        if self._entity_names is None:
            self._entity_names = unpack_texts(self.entity_text, self.entity_offsets)
        return self._entity_names

    @property
    def source(self) -> str:
        """Where the towers of the space it was trained in came from (empty when unknown)."""
        return _text(self.space_source)

    # -- the space it was trained in ---------------------------------------------------------------------------
    def record_space(self, condition: nn.Module, decoded: nn.Module, source: str) -> None:
        """Remember the towers the decoder is trained on (``condition``) and decodes (``decoded``)."""
        self.space_digest = torch.tensor([tower_digest(condition), tower_digest(decoded)], dtype=torch.int64)
        self.space_source = _bytes(source)

    def check_space(self, encoder: nn.Module, *, decoded: bool = True, where: str = "decoder") -> None:
        """Refuse to pair this decoder with an encoder of another space.

        Args:
            encoder: the encoder whose embeddings would be decoded (``decoded``) or trained on.
            decoded: compare with the decoded tower's digest (else the condition tower's).
            where: what the message names (a spec path, a function).

        Raises:
            ValueError: the encoder's width or weights are not those the decoder was trained with (a decoder that
                records no space accepts any encoder of its width).
        """
        width = getattr(encoder, "embed_dim", None)
        if width is not None and int(width) != self.in_dim:
            raise ValueError(f"{where}: the decoder reads {self.in_dim}-dim embeddings ({self._trained_on()}); "
                             f"this encoder gives {width}-dim ones")
        want = int(self.space_digest[1 if decoded else 0])
        if want and tower_digest(encoder) != want:
            raise ValueError(f"{where}: the decoder was trained in the embedding space of another model "
                             f"({self._trained_on()}); its tower digests to {want:016x}, this one to "
                             f"{tower_digest(encoder):016x}. A decoder only decodes the space it was trained in: "
                             "train one on this model's embeddings")

    def _trained_on(self) -> str:
        source = self.source
        return f"trained on the towers of {source}" if source else f"trained on {self.in_dim}-dim embeddings"

    # -- CapDec's offset and the entity vocabulary -----------------------------------------------------------
    def set_offset(self, offset: Tensor) -> None:
        """Keep CapDec's modality offset ``[N]`` (text centre minus image centre)."""
        if offset.shape != (self.in_dim,):
            raise ValueError(f"the offset must be [{self.in_dim}], got {list(offset.shape)}")
        self.offset = offset.detach().float().to(self.offset.device).clone()
        self.offset_ready = torch.ones((), dtype=torch.bool)

    def set_entities(self, names: Sequence[str], embeddings: Tensor) -> None:
        """Keep the entity vocabulary: ``names`` and their ``[E, N]`` text embeddings (normalised here)."""
        if embeddings.shape != (len(names), self.in_dim):
            raise ValueError(f"{len(names)} entity names need [{len(names)}, {self.in_dim}] embeddings, got "
                             f"{list(embeddings.shape)}")
        self.entity_embeddings = F.normalize(embeddings.detach().float(), dim=-1).contiguous()
        self.entity_text, self.entity_offsets = pack_texts(names)
        self._entity_names = list(names)
        self._room = None

    def retrieve(self, x: Tensor, k: int) -> list[list[str]]:
        """The ``k`` entity names nearest (cosine) to each row of ``x [B, N]``, nearest first.

        Raises:
            ValueError: the vocabulary is empty.
        """
        if not len(self.entity_names):
            raise ValueError("entities > 0 needs an entity vocabulary, and this decoder has none")
        sims = F.normalize(x.detach().float(), dim=-1) @ self.entity_embeddings.to(x.device).t()
        top = sims.topk(min(k, sims.shape[1]), dim=-1).indices.tolist()
        names = self.entity_names
        return [[names[i] for i in row] for row in top]

    def prompts(self, entities: Sequence[Sequence[str]]) -> list[list[int]]:
        """Hard-prompt token ids of each row: ``<bos>`` and ``entity_prompt`` with the row's names."""
        p = self.params
        assert isinstance(p, CapDecParams)
        texts = [" ".join(p.entity_prompt.format(", ".join(names)).split()) for names in entities]
        tok = self.tokenizer
        return [[tok.bos_id] + ids for ids in tok.ids(texts)]

    def prompt_room(self) -> int:
        """Tokens the longest hard prompt can take (0 without entities): the prompt with the k longest names."""
        p = self.params
        if not isinstance(p, CapDecParams) or not p.entities or not self.entity_names:
            return 0
        if self._room is None:
            lengths = [len(ids) for ids in self.tokenizer.ids(self.entity_names)]
            longest = [self.entity_names[i] for i in sorted(range(len(lengths)), key=lambda i: -lengths[i])]
            self._room = len(self.prompts([longest[: p.entities]])[0])
        return self._room

    # -- conditions --------------------------------------------------------------------------------------------
    def _check_width(self, x: Tensor) -> None:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"the decoder reads {self.in_dim}-dim embeddings ({self._trained_on()}); got "
                             f"{x.shape[-1]}-dim ones: embeddings of another model")

    def _condition(self, x: Tensor, *, decoding: bool) -> Tensor:
        """``[B, N]`` as the mapper reads it: normalised; with CapDec's noise in training, the offset when decoding."""
        p = self.params
        x = x.float()
        if isinstance(p, CapDecParams) and self.training and not decoding and p.noise_variance > 0:
            return noise_injection(x, p.noise_variance)
        if p.normalize or isinstance(p, CapDecParams):
            x = F.normalize(x, dim=-1)
        if decoding and isinstance(p, CapDecParams) and p.offset:
            if not bool(self.offset_ready):
                raise ValueError("offset = true, and this decoder has no modality offset: it was built without "
                                 f"image–text pairs in split {p.offset_split!r} (set decoder.offset_split)")
            x = x + self.offset.to(x.device)
        return x

    def _entities(self) -> int:
        p = self.params
        return p.entities if isinstance(p, CapDecParams) else 0

    # -- training --------------------------------------------------------------------------------------------
    def prepare(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Caption targets (``cl_lm``'s): ``ids [B, T]`` (caption tokens then the end token, pad after) and
        ``mask [B, T]`` (1 = target).

        Raises:
            ValueError: no captions, or one that is not a string or is empty (its index is named).
        """
        return self.lm.prepare(texts)

    def _caption_loss(self, condition: EncoderOutput, targets: Mapping[str, Tensor]) -> LossOutput:
        x = condition.embedding
        self._check_width(x)
        k = self.prefix_length
        prefix = self.mapper(self._condition(x, decoding=False)).to(self.lm.model.dtype)  # [B, K, D]
        ids, mask = targets["ids"], targets["mask"]
        if not self._entities():
            room = self.context - k + 1  # the last caption token is predicted from position context - 1
            if room < 1:
                raise ValueError(f"prefix_length {k} leaves no room for a caption in the LM's context of "
                                 f"{self.context}")
            ids, mask = ids[:, :room], mask[:, :room]
            inputs = torch.cat([prefix, self.lm.embed_tokens(ids[:, :-1])], dim=1)
            attention = torch.cat([torch.ones_like(mask[:, :1]).expand(-1, k), mask[:, :-1]], dim=1)
            logits = self.lm.model(inputs_embeds=inputs, attention_mask=attention).logits[:, k - 1 :]
            labels = ids.masked_fill(mask == 0, IGNORE)
        else:
            logits, labels = self._entity_logits(x, prefix, ids, mask)
        value = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE)
        return LossOutput(value)

    def _entity_logits(self, x: Tensor, prefix: Tensor, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Rows ``[<bos> prompt; K prefix; caption]`` (right-padded); logits ``[B, L - 1, V]`` and the labels
        they predict (``[B, L - 1]``, -100 outside the caption)."""
        p = self.params
        assert isinstance(p, CapDecParams)
        entities = self.retrieve(x, p.entities)
        if self.training and p.entity_drop > 0:
            keep = (torch.rand(len(entities), p.entities) >= p.entity_drop).tolist()
            entities = [[name for name, kept in zip(row, keeps) if kept] for row, keeps in zip(entities, keep)]
        prompts = self.prompts(entities)
        k, b = self.prefix_length, len(prompts)
        lengths = mask.sum(1).tolist()
        caps = [ids[i, : min(int(lengths[i]), self.context - k - len(prompts[i]))] for i in range(b)]
        if any(len(c) < 1 for c in caps):
            raise ValueError(f"prefix_length {k} and the entity prompt leave no room for a caption in the LM's "
                             f"context of {self.context}")
        total = [len(pr) + k + len(c) for pr, c in zip(prompts, caps)]
        width = max(total)
        device = prefix.device
        inputs = torch.zeros(b, width, self.lm.width, device=device, dtype=prefix.dtype)
        attention = torch.zeros(b, width, dtype=torch.long, device=device)
        labels = torch.full((b, width), IGNORE, dtype=torch.long, device=device)
        for i, (pr, cap) in enumerate(zip(prompts, caps)):
            h = len(pr)
            inputs[i, :h] = self.lm.embed_tokens(torch.tensor(pr, device=device))
            inputs[i, h : h + k] = prefix[i]
            inputs[i, h + k : h + k + len(cap)] = self.lm.embed_tokens(cap.to(device))
            attention[i, : total[i]] = 1
            labels[i, h + k : h + k + len(cap)] = cap.to(device)
        logits = self.lm.model(inputs_embeds=inputs, attention_mask=attention).logits[:, :-1]
        return logits, labels[:, 1:]

    # -- generation ------------------------------------------------------------------------------------------
    def settings(self, max_length: int) -> Any:
        """The :class:`cl_lm.generate.Decoding` of the params for ``max_length`` new tokens."""
        from cl_lm.generate import Decoding

        p = self.params
        return Decoding(method=p.method, max_new_tokens=max_length, beam_size=p.beam_size,
                        length_penalty=p.length_penalty, top_k=p.top_k, top_p=p.top_p, temperature=p.temperature,
                        seed=p.seed, stop=tuple(p.stop))

    @torch.no_grad()
    def _decode(self, embeddings: Tensor, *, max_length: int) -> list[str]:
        """Captions of ``embeddings [B, N]`` (the decoded role's tower), at most ``max_length`` tokens each.

        Raises:
            ValueError: another width; K + the hard prompt + ``max_length`` past the LM's context; ``offset``
                without a computed offset.
        """
        from cl_lm.generate import generate

        self._check_width(embeddings)
        k = self.prefix_length
        room = self.prompt_room()
        if k + room + max_length > self.context:
            extra = f" + the entity prompt (up to {room} tokens)" if room else ""
            raise ValueError(f"prefix_length {k}{extra} + max_length {max_length} = {k + room + max_length} "
                             f"exceeds the LM's context of {self.context} positions; lower max_length")
        device = self.lm.model.get_input_embeddings().weight.device
        x = embeddings.to(device)
        prefix = self.mapper(self._condition(x, decoding=True)).to(self.lm.model.dtype)
        tok = self.tokenizer
        settings = self.settings(max_length)
        if not self._entities():
            return generate(self.lm.model, eos_id=tok.eos_id, pad_id=tok.pad_id, prefix=prefix, settings=settings,
                            tokenizer=tok).texts
        prompts = self.prompts(self.retrieve(x, self._entities()))
        out: list[str] = [""] * len(prompts)
        for length in sorted({len(pr) for pr in prompts}):  # one batch per prompt length: no padding inside
            rows = [i for i, pr in enumerate(prompts) if len(pr) == length]
            hard = self.lm.embed_tokens(torch.tensor([prompts[i] for i in rows], device=device))
            joined = torch.cat([hard.to(prefix.dtype), prefix[rows]], dim=1)
            texts = generate(self.lm.model, eos_id=tok.eos_id, pad_id=tok.pad_id, prefix=joined, settings=settings,
                             tokenizer=tok).texts
            for i, text in zip(rows, texts):
                out[i] = text
        return out

    def usage_notes(self, role: str, source: str) -> list[str]:
        """What the run's model card says under "How to load"."""
        p = self.params
        decoded = p.image_role if isinstance(p, CapDecParams) else p.condition
        return [f"Captions: `cl caption {source} image.png`, or `from_pretrained(\"{source}\").caption(\"{decoded}\", "
                "[pil_image])`; the language model inside it: `pipeline.decoder.lm` (an `lm.gpt2` decoder)."]

    # -- loading ---------------------------------------------------------------------------------------------
    def _resize(self, saved: Mapping[str, Tensor]) -> None:
        """Take the saved shapes (a vocabulary, a source string, another LM) before a strict load."""
        config = saved.get("lm_config")
        if config is not None and not torch.equal(config.cpu(), self.lm_config.cpu()):
            cfg = json.loads(_text(config))
            self.lm = lm_from_config(cfg)
            self.mapper = self._make_mapper(self.lm.width)
            self._set_lm_trainable()
            self.lm_config = config.detach().clone()
        lm_saved = {k[3:]: v for k, v in saved.items() if k.startswith("lm.")}
        if lm_saved:
            self.lm.resize_to_saved(lm_saved)
        for name in ("space_source", "entity_embeddings", "entity_text", "entity_offsets"):
            value, current = saved.get(name), getattr(self, name)
            if value is not None and value.shape != current.shape:
                setattr(self, name, torch.empty(value.shape, dtype=current.dtype, device=current.device))
        self._entity_names = None
        self._room = None

    def resize_to_saved(self, saved: Mapping[str, Tensor]) -> None:
        """``cl_core.weights``' hook: see :meth:`_resize`."""
        self._resize(saved)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        self._resize({k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)})
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._entity_names = None
        self._room = None


# -- the factories -------------------------------------------------------------------------------------------------


def _source_of(ctx: Any, role: str) -> str:
    """``source:role`` of a ``core.from-run`` encoder table (or the table's type)."""
    spec = getattr(ctx, "spec", None)
    ref = spec.encoders.get(role) if spec is not None else None
    if ref is None:
        return ""
    source = getattr(ref.params, "source", None)
    return f"{source} ({role})" if source else f"{ref.type} ({role})"


def _load_lm(params: ClipCapParams, ctx: Any) -> tuple[Any, bool]:
    """The LM and whether it is a stand-in (a load whose LM run is not here: the saved one replaces it)."""
    import cl_lm
    from cl_core.api import ClError, folder_or_hub_id

    where = f"{ctx.path or 'decoder'}.lm"
    try:
        folder_or_hub_id()(None, None, params.lm)
        return cl_lm.load_lm(params.lm, freeze=not params.lm_trains), False
    except (ClError, ValueError) as exc:
        if ctx.weights_follow:
            from cl_lm.testing import tiny_lm

            return tiny_lm(), True
        raise BuildError(f"{where}: {exc}") from None


def _check_objectives(params: ClipCapParams, ctx: Any) -> None:
    spec = getattr(ctx, "spec", None)
    if spec is None:
        return
    for i, ref in enumerate(spec.objective):
        if ref.type == "core.caption" and ref.params.condition != params.condition:
            raise spec_problem(ctx, f"objective[{i}].condition",
                               f"{ref.params.condition!r}, and the decoder ({spec.decoder.type}) is trained on role "
                               f"{params.condition!r} (decoder.condition)",
                               f"set both to the same role: condition = \"{params.condition}\"")


def _check_captions(params: ClipCapParams, ctx: Any, where: str) -> None:
    """Empty captions in the training split are a located error before training."""
    dataset = ctx.dataset
    if dataset is None:
        return
    source = dataset.splits().get("train")
    if source is None or params.text_field not in getattr(source, "fields", ()):
        return
    texts = getattr(source, "texts", None)
    if texts is None:
        texts = []
        for start in range(0, len(source), 4096):
            texts += source.get(list(range(start, min(len(source), start + 4096))))[params.text_field]
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (f" (and {len(bad) - 10} more)" if len(bad) > 10 else "")
        raise DataError(f"data: split 'train' has {len(bad)} empty caption(s) in field {params.text_field!r} "
                        f"(examples {shown}); remove them, a caption decoder learns nothing from them "
                        f"({where} reads them)")


def _offset(decoder: PrefixCaptioner, params: CapDecParams, ctx: Any, image: Any, text: Any) -> None:
    """CapDec's modality offset from the ``offset_split`` examples, when that split has images and captions."""
    dataset = ctx.dataset
    source = dataset.splits().get(params.offset_split) if dataset is not None else None
    fields = getattr(source, "fields", ())
    if source is None or params.image_role not in fields or params.text_field not in fields or not len(source):
        if params.offset:
            have = ", ".join(dataset.splits()) if dataset is not None else "no data"
            raise BuildError(f"{ctx.path}.offset_split: offset = true needs image–caption pairs to compute the "
                             f"modality offset from, and split {params.offset_split!r} has none (splits: {have})")
        return
    n = len(source)
    count = min(n, params.offset_samples)
    indices = sorted({round(i * (n - 1) / max(1, count - 1)) for i in range(count)})
    items = source.get(indices)
    images = image.embed(items[params.image_role], batch_size=64)
    texts = text.embed(items[params.text_field], batch_size=256)
    decoder.set_offset(modality_offset(texts, images))


def _entities(decoder: PrefixCaptioner, params: CapDecParams, ctx: Any, text: Any) -> None:
    """The entity vocabulary (:func:`_entity_names`), embedded by the text tower through the templates."""
    names = _entity_names(params, ctx)
    rows = []
    for template in params.entity_templates:
        rows.append(F.normalize(text.embed([template.format(n) for n in names], batch_size=256).float(), dim=-1))
    decoder.set_entities(names, torch.stack(rows).mean(0))


def _entity_names(params: CapDecParams, ctx: Any) -> list[str]:
    """The entity vocabulary: class names of ``entity_splits`` and lines of ``entity_files``, distinct, in order.

    Raises:
        BuildError: a split the data lacks, or no names at all. DataError: an unreadable file.
    """
    names: list[str] = []
    splits = ctx.dataset.splits() if ctx.dataset is not None else {}
    for name in params.entity_splits:
        source = splits.get(name)
        if source is None:
            if ctx.dataset is None:
                continue
            raise BuildError(f"{ctx.path}.entity_splits: no split {name!r}; the data has {', '.join(splits)}")
        names += [str(c) for c in (source.class_names or [])]
    for file in params.entity_files:
        try:
            names += [line.strip() for line in Path(file).read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{ctx.path}.entity_files: cannot read {file}: {exc}") from exc
    names = list(dict.fromkeys(n for n in names if n.strip()))
    if not names:
        raise BuildError(f"{ctx.path}.entities: no entity names: the splits {list(params.entity_splits)} have no class "
                         f"names and no entity_files are given")
    return names


def _init(decoder: PrefixCaptioner, params: ClipCapParams, ctx: Any) -> None:
    """Start from the trained decoder of ``params.init``, refusing one trained in another space."""
    from safetensors.torch import load_file

    from cl_core.api import ClError, resolve_source

    where = f"{ctx.path or 'decoder'}.init"
    assert params.init is not None
    try:
        folder = resolve_source(params.init)
    except ClError as exc:
        raise BuildError(f"{where}: {exc}") from None
    try:
        saved = load_file(str(folder / "model.safetensors"))
    except Exception as exc:
        raise BuildError(f"{where}: cannot read {folder / 'model.safetensors'}: {exc}") from None
    state = {k[len("decoder."):]: v for k, v in saved.items() if k.startswith("decoder.")}
    if "space_digest" not in state:
        raise BuildError(f"{where}: {params.init} holds no capdec decoder")
    want = state["space_digest"]
    have = decoder.space_digest
    if bool(have.any()) and bool(want.any()) and not torch.equal(want, have):
        source = _text(state.get("space_source", torch.zeros(0, dtype=torch.uint8)))
        raise BuildError(f"{where}: {params.init} was trained in the embedding space of another model "
                         f"({source or 'other towers'}); this spec's towers ({decoder.source}) embed differently. "
                         "A decoder only decodes the space it was trained in: train one on this model")
    try:
        kept = decoder.space_digest.clone(), decoder.space_source.clone()
        decoder.load_state_dict(state, strict=True)
        if bool(kept[0].any()):
            decoder.space_digest, decoder.space_source = kept
    except RuntimeError as exc:
        raise BuildError(f"{where}: the decoder of {params.init} does not fit this decoder table (mapper, "
                         f"prefix_length, LM): {str(exc).splitlines()[0]}") from None


def build_decoder(params: ClipCapParams, ctx: Any) -> PrefixCaptioner:
    """Factory of ``capdec.clipcap`` and ``capdec.capdec``.

    Checks, before any training: the condition (and decoded) roles are encoder roles, frozen in a spec that
    trains, of one width; the ``core.caption`` objectives train on the decoder's condition role; K fits the LM's
    context with a caption (and the entity prompt); no empty training caption. Then records the towers' digests,
    computes CapDec's offset and entity vocabulary, and starts from ``init``.

    Raises:
        SpecError: a role that is not an encoder role, a tower that trains, an objective on another role.
        BuildError: the LM or ``init`` cannot be loaded or does not fit, no width to build with, K past the
            context, no offset data while ``offset = true``.
        DataError: empty captions in the training split.
    """
    path = ctx.path or "decoder"
    capdec = isinstance(params, CapDecParams)
    decoded_role = params.image_role if isinstance(params, CapDecParams) else params.condition
    encoders = dict(ctx.encoders or {})
    spec = getattr(ctx, "spec", None)
    roles = [("condition", params.condition)] + ([("image_role", decoded_role)] if capdec else [])
    if encoders or spec is not None:
        for key, role in roles:
            if role not in encoders:
                raise spec_problem(ctx, f"{path}.{key}", f"no encoder role {role!r}; encoder roles: "
                                   f"{', '.join(encoders) or 'none'}")
    condition, decoded = encoders.get(params.condition), encoders.get(decoded_role)
    widths = {int(e.embed_dim) for e in (condition, decoded) if e is not None}
    if len(widths) > 1:
        raise spec_problem(ctx, f"{path}.image_role", f"the towers of {params.condition!r} and {decoded_role!r} give "
                           f"{condition.embed_dim}- and {decoded.embed_dim}-dim embeddings: a text-only decoder "
                           "decodes images of the space its text lives in")
    in_dim = widths.pop() if widths else params.embed_dim
    if in_dim is None:
        raise BuildError(f"{path}.embed_dim: no encoder of role {params.condition!r} to take the width from; give "
                         "embed_dim")
    if params.embed_dim is not None and params.embed_dim != in_dim:
        raise spec_problem(ctx, f"{path}.embed_dim", f"{params.embed_dim}, and the tower of {params.condition!r} "
                           f"gives {in_dim}-dim embeddings (leave embed_dim out)")
    if spec is not None and spec.trains and not ctx.weights_follow:
        for key, role in roles:
            encoder = encoders[role]
            if any(q.requires_grad for q in encoder.parameters()):
                raise spec_problem(ctx, f"{path}.{key}", f"the encoder of role {role!r} trains in this spec, and the "
                                   "decoder is trained on the space of a fixed tower (ClipCap never fine-tunes CLIP)",
                                   "freeze it: type = \"core.from-run\" (frozen by default)")
    _check_objectives(params, ctx)
    lm, stand_in = _load_lm(params, ctx)
    if params.prefix_length + 1 >= lm.context and not stand_in:
        raise BuildError(f"{path}.prefix_length: {params.prefix_length} prefix embeddings leave no room for a caption "
                         f"in the LM's context of {lm.context} positions (at most {lm.context - 2})")
    try:
        decoder = PrefixCaptioner(params, lm, in_dim)
    except ValueError as exc:
        raise BuildError(f"{path}: {exc}") from None
    source = "; ".join(dict.fromkeys(s for s in (_source_of(ctx, params.condition), _source_of(ctx, decoded_role))
                                     if s))
    if ctx.weights_follow:
        # the values come with the saved weights; a resume loads its checkpoint without resizing, so the buffers
        # whose sizes come from the spec and the data take their shapes here
        decoder.space_source = torch.tensor(list(source.encode("utf-8")), dtype=torch.uint8)
        if isinstance(params, CapDecParams) and params.entities and ctx.dataset is not None:
            names = _entity_names(params, ctx)
            decoder.set_entities(names, torch.zeros(len(names), in_dim))
        return decoder
    if condition is not None and decoded is not None:
        decoder.record_space(condition, decoded, source)
    _check_captions(params, ctx, path)
    if isinstance(params, CapDecParams) and condition is not None and decoded is not None:
        # built on its own (no encoders: tests, hand assembly), the offset and vocabulary are set by hand
        _offset(decoder, params, ctx, decoded, condition)
        if params.entities:
            _entities(decoder, params, ctx, condition)
            room = decoder.prompt_room()
            if params.prefix_length + room + 1 >= lm.context:
                raise BuildError(f"{path}.prefix_length: {params.prefix_length} prefix embeddings and the entity "
                                 f"prompt (up to {room} tokens) leave no room for a caption in the LM's context of "
                                 f"{lm.context}")
        # What was embedded here stays out of the frozen towers' caches: training then embeds every item in its
        # own batches, as a resumed run does, so a resume gives the same bits (an embedding's last bits depend
        # on the batch it was computed in).
        for encoder in (condition, decoded):
            clear = getattr(encoder, "clear_cache", None)
            if callable(clear):
                clear()
    if params.init is not None:
        _init(decoder, params, ctx)
    return decoder
