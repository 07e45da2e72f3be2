"""``decap.decap``: DeCap (Li et al., ICLR 2023, "DeCap: Decoding CLIP Latents for Zero-Shot Captioning via
Text-Only Training"), with ViECap's entity-aware hard prompts as an option (Fei et al., ICCV 2023).

What the decoder is made of (its state-dict keys, under ``decoder.``):

* ``lm.*``: an ``lm.gpt2`` language model (``cl_lm``): a pretrained LM run (``lm``) or one trained from scratch
  (``scratch``, DeCap's paper), its tokenizer inside (``lm.tokenizer_json``);
* ``prefix.*``: ``Linear(N -> D)``, the map of a normalised ``[N]`` embedding to **one** prefix embedding ``[D]``
  of the LM's width;
* ``memory.*``: the support memory (:class:`~cl_decap.memory.TextMemory`): M texts and their unit-norm text
  embeddings ``[M, N]``;
* ``entities.*`` (with ``entities > 0``): the entity vocabulary (:class:`~cl_decap.memory.EntityVocabulary`);
* ``space_text``, ``space_image``: ``uint8 [32]`` digests of the contrastive model's text and image towers
  (:mod:`cl_decap.space`); ``lm_config``: the LM's ``lm.gpt2`` params as UTF-8 JSON, so a saved decoder
  rebuilds its LM without the LM's run.

A training row (``core.caption``, condition = the caption's own text embedding t, ``[B, N]``)::

    [<bos> hard prompt]  [prefix(normalise(t))]  <bos> c_1 ... c_n        (inputs, left part only with entities)
                                 ↓ predicts      <bos>  c_1 ...  c_n <eos>  (targets; cross-entropy, label smoothing)

At inference (``decode``, the image embedding v ``[B, N]``): v is normalised, projected onto the memory
(``projection = "memory"``: normalise(softmax(v M^T / tau) M)), mapped to the prefix, and the LM continues
``[hard prompt] [prefix] <bos>`` greedily; the hard prompt names the ``entities`` names closest to v itself
(zero-shot classification over the vocabulary).
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

from cl_core.api import (
    BuildError,
    ClError,
    DataError,
    Decoder,
    EncoderOutput,
    LossOutput,
    WeightsError,
    build_nested,
    spec_problem,
)

from cl_captions.clipre import read_lines

from . import space
from .memory import EntityVocabulary, TextMemory
from .params import DeCapParams

#: label of a position that is not a target (PyTorch's and transformers' ignore index)
IGNORE = -100


class DeCap(Decoder):
    """DeCap's decoder (module docstring).

    Args:
        params: the :class:`~cl_decap.params.DeCapParams`.
        lm: the ``lm.gpt2`` decoder (a :class:`cl_lm.model.GPT2Decoder`).
        embed_dim: N, the width of the contrastive model's embeddings.
        memory: the support memory (may be empty when weights follow).
        entities: the entity vocabulary (``params.entities > 0``), else None.
        towers: the pipeline's encoders by role, to check the recorded space against on load (not registered).
    """

    trainable = True
    reads_tokens = False

    def __init__(self, params: DeCapParams, lm: nn.Module, embed_dim: int, memory: TextMemory,
                 entities: EntityVocabulary | None = None, towers: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__()
        if params.entities and entities is None:
            raise ValueError(f"entities = {params.entities} needs an entity vocabulary")
        for name, table in (("memory", memory), ("entity vocabulary", entities)):
            if table is not None and table.width != embed_dim:
                raise ValueError(f"the {name} holds {table.width}-dim text embeddings; the decoder maps {embed_dim}-dim "
                                 "ones: they must come from the same text tower")
        self.params = params
        self.lm = lm
        self.prefix = nn.Linear(embed_dim, int(lm.width))
        self.memory = memory
        self.entities = entities if params.entities else None
        self.register_buffer("space_text", space.unknown())
        self.register_buffer("space_image", space.unknown())
        self.register_buffer("lm_config", _config_bytes(lm.params))
        object.__setattr__(self, "_towers", dict(towers or {}))

    # -- what it is ---------------------------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        """N: the width of the embeddings it decodes."""
        return int(self.prefix.in_features)

    @property
    def tokenizer(self) -> Any:
        """The LM's tokenizer (:class:`cl_lm.tokenizer.LMTokenizer`)."""
        return self.lm.tokenizer

    def record_space(self, text: nn.Module, image: nn.Module | None) -> None:
        """Record the digests of the towers whose space this decoder is trained in (:mod:`cl_decap.space`)."""
        self.space_text = space.tower_digest(text).to(self.space_text.device)
        self.space_image = (space.tower_digest(image) if image is not None else space.unknown()).to(
            self.space_image.device)

    def check_space(self, text: nn.Module | None, image: nn.Module | None = None, *,
                    saved: Mapping[str, Tensor] | None = None) -> None:
        """Check that ``text`` / ``image`` are the towers this decoder was trained with.

        Args:
            text, image: the towers (encoders) to check; None skips one.
            saved: the recorded digests to check against (``space_text`` / ``space_image``), default this decoder's.

        Raises:
            WeightsError: a tower whose weights differ from those recorded (another model's space).
        """
        recorded = dict(saved or {"space_text": self.space_text, "space_image": self.space_image})
        wrong = []
        for key, tower, role in (("space_text", text, self.params.text_role),
                                 ("space_image", image, self._image_role or "image")):
            digest = recorded.get(key)
            if tower is None or digest is None or not space.is_known(digest):
                continue
            now = space.tower_digest(tower)
            if not torch.equal(now, digest.cpu()):
                wrong.append(f"the {role!r} tower (recorded {space.short(digest)}, this pipeline's "
                             f"{space.short(now)})")
        if wrong:
            raise WeightsError("this DeCap decoder was trained in the space of another contrastive model: "
                               + "; ".join(wrong) + " differ. Decode with the towers it was trained with (its own "
                               "run), or train a decoder for these towers")

    @property
    def _image_role(self) -> str | None:
        return getattr(self, "_image_role_name", None)

    def bind(self, pipeline: Any) -> None:
        """Check another pipeline's towers (its ``text_role`` and image role encoders) against the recorded space
        and keep them to check again on a later load.

        Raises:
            WeightsError: the pipeline lacks the text role, or a tower is not the one the decoder was trained with.
        """
        encoders = dict(pipeline.encoders.items())
        if self.params.text_role not in encoders:
            raise WeightsError(f"the pipeline has no encoder role {self.params.text_role!r} (its roles: "
                               f"{', '.join(encoders)}); DeCap needs the text tower it was trained with")
        image_role = self._image_role or ("image" if "image" in encoders else None)
        text, image = encoders[self.params.text_role], encoders.get(image_role) if image_role else None
        self.check_space(text, image)
        object.__setattr__(self, "_towers", {self.params.text_role: text,
                                             **({image_role: image} if image_role and image is not None else {})})
        object.__setattr__(self, "_image_role_name", image_role)

    # -- training ------------------------------------------------------------------------------------------------
    def prepare(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Caption targets: ``ids`` ``[B, T]`` int64, each row ``<bos> caption <eos>`` cut to ``max_length`` tokens
        (``pad_id`` after), and ``mask`` ``[B, T]`` (1 = a real token).

        Raises:
            ValueError: no captions, or one that is not a string or is empty.
        """
        if len(texts) == 0:
            raise ValueError("no captions given")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"captions[{i}]: expected a string, got {type(t).__name__}")
            if not t.strip():
                raise ValueError(f"captions[{i}] is empty (or only whitespace): nothing to learn from")
        tok = self.tokenizer
        rows = [([tok.bos_id] + ids + [tok.eos_id])[: self.params.max_length] for ids in tok.ids(list(texts))]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return {"ids": ids, "mask": mask}

    def _caption_loss(self, condition: EncoderOutput, targets: Mapping[str, Tensor]) -> LossOutput:
        embedding = condition.embedding
        if embedding.shape[1] != self.embed_dim:
            raise ValueError(f"DeCap maps {self.embed_dim}-dim text embeddings to its prefix, got "
                             f"{embedding.shape[1]}-dim ones: another model's space")
        v = F.normalize(embedding.float(), dim=-1)
        hard = self._prompts(v, drop=self.params.entity_mask if self.training else 0.0) if self.entities else None
        soft = self.prefix(self.noisy(v) if self.training else v)
        ids, mask = targets["ids"], targets["mask"]
        logits = self._logits(soft, hard, ids[:, :-1], mask[:, :-1])  # [B, T, V]: the soft position predicts ids[0]
        labels = ids.masked_fill(mask == 0, IGNORE)
        value = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE,
                                label_smoothing=self.params.label_smoothing)
        return LossOutput(value)

    def _logits(self, soft: Tensor, hard: list[list[int]] | None, ids: Tensor, mask: Tensor) -> Tensor:
        """Next-token logits ``[B, T + 1, V]`` at the soft prefix and each of the ``T`` input tokens ``ids [B, T]``
        (``mask [B, T]``), after the left-padded hard prompts (positions count real tokens only).

        Raises:
            ValueError: the row is longer than the LM's context.
        """
        inputs, attention = self._inputs(soft, hard)
        h = inputs.shape[1]
        if h + ids.shape[1] > self.lm.context:
            raise ValueError(f"a training row of {h} prompt/prefix + {ids.shape[1]} caption positions exceeds the LM's "
                             f"context of {self.lm.context}")
        inputs = torch.cat([inputs, self.lm.embed_tokens(ids).to(inputs.dtype)], dim=1)
        attention = torch.cat([attention, mask.to(attention.dtype)], dim=1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        out = self.lm.model(inputs_embeds=inputs, attention_mask=attention, position_ids=positions)
        return out.logits[:, h - 1 :]

    def _inputs(self, soft: Tensor, hard: list[list[int]] | None) -> tuple[Tensor, Tensor]:
        """``[B, H + 1, D]`` input embeddings (the hard prompts left-padded to H, then the soft prefix) and their
        ``[B, H + 1]`` attention mask."""
        b = soft.shape[0]
        dtype = self.lm.embed_tokens(torch.zeros(1, 1, dtype=torch.long, device=soft.device)).dtype
        soft = soft.to(dtype)[:, None]
        ones = torch.ones(b, 1, dtype=torch.long, device=soft.device)
        width = max((len(r) for r in hard), default=0) if hard else 0
        if not width:
            return soft, ones
        ids = torch.full((b, width), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        for i, r in enumerate(hard):  # type: ignore[arg-type]
            if r:
                ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
                mask[i, width - len(r) :] = 1
        ids, mask = ids.to(soft.device), mask.to(soft.device)
        return torch.cat([self.lm.embed_tokens(ids).to(dtype), soft], dim=1), torch.cat([mask, ones], dim=1)

    def noisy(self, v: Tensor) -> Tensor:
        """CapDec's noise injection (``noise_variance`` > 0): normalise(v + N(0, variance I)) of normalised ``v [B, N]``,
        drawn from the global torch RNG (a resumed run draws the same); ``v`` itself when the variance is 0."""
        if self.params.noise_variance <= 0:
            return v
        noise = torch.randn(v.shape, dtype=v.dtype).to(v.device) * self.params.noise_variance ** 0.5
        return F.normalize(v + noise, dim=-1)

    # -- entities (ViECap) ---------------------------------------------------------------------------------------
    def entity_names(self, query: Tensor, *, drop: float = 0.0) -> list[list[str]]:
        """The ``entities`` names closest to each normalised query ``[B, N]``, best first; with ``drop > 0`` each
        name is left out with that probability (ViECap's random masking; draws from the global torch RNG, so a
        resumed run draws the same).

        Raises:
            ValueError: no entity vocabulary, or see :meth:`EntityVocabulary.top`.
        """
        if self.entities is None:
            raise ValueError("this decoder has no entity vocabulary (entities = 0)")
        index = self.entities.top(query, self.params.entities).cpu()
        keep = torch.rand(index.shape) >= drop if drop > 0 else torch.ones(index.shape, dtype=torch.bool)
        names = self.entities.texts
        return [[names[j] for j, k in zip(row, kept) if k] for row, kept in zip(index.tolist(), keep.tolist())]

    def prompt_text(self, names: Sequence[str]) -> str:
        """ViECap's hard prompt for ``names`` (``entity_template`` with the names joined by ", "; "something" for
        none)."""
        return self.params.entity_template.format(", ".join(names) if names else "something")

    def _prompts(self, query: Tensor, *, drop: float) -> list[list[int]]:
        """Token ids ``<bos> prompt`` of each row's hard prompt."""
        tok = self.tokenizer
        texts = [self.prompt_text(names) for names in self.entity_names(query, drop=drop)]
        return [[tok.bos_id] + ids for ids in tok.ids(texts)]

    def longest_prompt(self) -> int:
        """An upper bound of the tokens of a hard prompt (``<bos>`` included): the template's tokens plus, for the
        ``entities`` longest names, their tokens and a separator each; 0 without entities."""
        if self.entities is None or len(self.entities) == 0:
            return 0
        tok = self.tokenizer
        lengths = sorted((len(ids) for ids in tok.ids([" " + n for n in self.entities.texts])), reverse=True)
        frame = len(tok.ids([self.params.entity_template.replace("{}", "something")])[0])
        return 1 + frame + sum(n + 1 for n in lengths[: self.params.entities])

    # -- generation ----------------------------------------------------------------------------------------------
    def project(self, embeddings: Tensor) -> Tensor:
        """What the LM is conditioned on for image embeddings ``[B, N]``: normalised, then (``projection =
        "memory"``) projected onto the memory with temperature ``temperature``; ``[B, N]`` unit norm.

        Raises:
            ValueError: an empty memory, or embeddings of another width.
        """
        v = F.normalize(embeddings.float().to(self.prefix.weight.device), dim=-1)
        if self.params.projection == "memory":
            return self.memory.project(v, self.params.temperature)
        return v

    @torch.no_grad()
    def _decode(self, embeddings: Tensor, *, max_length: int) -> list[str]:
        """Greedy (or beam) continuations of ``[hard prompt] [prefix] <bos>``, at most ``max_length`` tokens each
        (module docstring). Every check runs before the LM does any work.

        Raises:
            ValueError: embeddings of another width; an empty memory or entity vocabulary; a prompt + prefix +
                ``max_length`` longer than the LM's context.
        """
        if embeddings.shape[1] != self.embed_dim:
            raise ValueError(f"DeCap decodes {self.embed_dim}-dim embeddings of the model it was trained with, got "
                             f"{embeddings.shape[1]}-dim ones: they come from a model of another space")
        v = F.normalize(embeddings.float().to(self.prefix.weight.device), dim=-1)
        query = self.project(v)
        hard = self._prompts(v, drop=0.0) if self.entities is not None else [[] for _ in range(v.shape[0])]
        longest = max(len(h) for h in hard)
        need = longest + 2 + max_length  # prompt, soft prefix, <bos>, generated tokens
        if need > self.lm.context:
            raise ValueError(f"max_length = {max_length} generated tokens after a prompt of {longest} tokens, the "
                             f"prefix and <bos> need {need} positions; the LM's context is {self.lm.context} (use "
                             f"max_length <= {self.lm.context - longest - 2})")
        soft = self.prefix(query)
        texts: list[str] = [""] * v.shape[0]
        groups: dict[int, list[int]] = {}
        for i, h in enumerate(hard):
            groups.setdefault(len(h), []).append(i)
        bos = self.tokenizer.bos_id
        for rows in groups.values():  # rows whose prompts are equally long decode together, without padding
            at = torch.tensor(rows, device=soft.device)
            prefix, _ = self._inputs(soft.index_select(0, at), [hard[i] for i in rows] if longest else None)
            out = self.lm.generate(prefix=prefix, input_ids=[[bos]] * len(rows), method=self.params.method,
                                   beam_size=self.params.beam_size, max_new_tokens=max_length, stop=())
            for i, text in zip(rows, out.texts):
                texts[i] = text.strip()
        return texts

    def usage_notes(self, role: str, source: str) -> list[str]:
        """What the run's model card says under "How to load" (``cl_core.modelcard.usage_notes``)."""
        return [f"DeCap (`decap.decap`): `from_pretrained(\"{source}\").caption(\"image\", images)` projects each "
                "image embedding onto the saved memory of text embeddings and decodes it; "
                f"`cl_decap.load_decoder(\"{source}\", pipeline=other)` checks another pipeline's towers first."]

    # -- loading -------------------------------------------------------------------------------------------------
    def resize_to_saved(self, tensors: Mapping[str, Tensor]) -> None:
        """Before a strict load (keys relative to this module): rebuild the LM from the saved ``lm_config`` when it
        is not the one built (a decoder loaded without its LM's run), then let the memory, the entities and the LM
        take the saved shapes."""
        for name in ("memory.embeddings", "entities.embeddings"):
            table = tensors.get(name)
            if table is not None and (table.dim() != 2 or table.shape[1] != self.embed_dim):
                raise WeightsError(f"decoder.{name} holds {list(table.shape)} embeddings; this decoder maps "
                                   f"{self.embed_dim}-dim text embeddings (a memory of another width: weights of "
                                   "another model, or damaged)")
        saved = tensors.get("lm_config")
        if saved is not None and not torch.equal(saved.cpu(), self.lm_config.cpu()):
            device = self.prefix.weight.device
            self.lm = _lm_from_config(saved, tensors).to(device)
            self.prefix = nn.Linear(self.embed_dim, int(self.lm.width), device=device)
            self.lm_config = saved.detach().clone().to(self.lm_config.device)
        for name in ("memory", "entities", "lm"):
            module = getattr(self, name, None)
            resize = getattr(module, "resize_to_saved", None)
            if callable(resize):
                prefix = f"{name}."
                resize({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        own = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        self.resize_to_saved(own)
        towers = self._towers
        if towers:
            self.check_space(towers.get(self.params.text_role),
                             towers.get(self._image_role) if self._image_role else None,
                             saved={k: own[k] for k in ("space_text", "space_image") if k in own})
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# -- the LM -------------------------------------------------------------------------------------------------------


def _config_bytes(params: Any) -> Tensor:
    """The LM's ``lm.gpt2`` params as UTF-8 JSON in a uint8 tensor."""
    values = attrs.asdict(params, recurse=True)
    blob = json.dumps(values, sort_keys=True).encode("utf-8")
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8).clone()


def _lm_from_config(blob: Tensor, tensors: Mapping[str, Tensor]) -> nn.Module:
    """An ``lm.gpt2`` of the saved architecture (its tokenizer and vocabulary rows come with the saved weights).

    Raises:
        WeightsError: the saved ``lm_config`` is not such a document.
    """
    from cl_lm.model import GPT2Decoder
    from cl_lm.params import GPT2Params
    from cl_lm.tokenizer import bytes_tokenizer

    try:
        values = json.loads(bytes(blob.cpu().tolist()).decode("utf-8"))
        values["tokenizer"] = "bytes"  # a stand-in: the saved tokenizer_json replaces it on load
        values["stop"] = tuple(values.get("stop", ()))
        params = GPT2Params(**values)
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"decoder.lm_config: not the params of an lm.gpt2 model ({exc}; damaged weights?)") from None
    rows = tensors.get("lm.model.transformer.wte.weight")
    return GPT2Decoder(params, bytes_tokenizer(), rows=int(rows.shape[0]) if rows is not None else None)


def _stand_in_lm() -> nn.Module:
    """A tiny ``lm.gpt2`` that a load replaces with the saved one (``resize_to_saved``)."""
    from cl_lm.model import GPT2Decoder
    from cl_lm.params import GPT2Params
    from cl_lm.tokenizer import bytes_tokenizer

    return GPT2Decoder(GPT2Params(tokenizer="bytes", context=8, layers=1, width=8, heads=1), bytes_tokenizer())


def _local(source: str) -> bool:
    return Path(source).expanduser().is_dir()


def build_lm(params: DeCapParams, ctx: Any, path: str) -> nn.Module:
    """The decoder's LM: the pretrained ``lm`` run (``cl_lm.load_lm``) or the ``scratch`` table (built with the
    build's registry); when weights follow and the ``lm`` run is not on this machine, a stand-in the load replaces.

    Raises:
        BuildError: the LM run cannot be loaded or holds no ``lm.gpt2``; the scratch table fails.
    """
    if params.scratch is not None:
        lm = build_nested(ctx, params.scratch, f"{path}.scratch", Decoder)
    else:
        assert params.lm is not None
        if ctx.weights_follow and not _local(params.lm):
            try:
                lm = _load_lm(params.lm)
            except ClError:
                return _stand_in_lm()
        else:
            from .params import _LM

            try:
                _LM(None, None, params.lm)
                lm = _load_lm(params.lm)
            except (ClError, ValueError) as exc:
                raise BuildError(f"{path}.lm: {exc}") from None
        lm.set_trainable(params.trainable_layers)
    if type(lm).__name__ != "GPT2Decoder" or not hasattr(lm, "generate"):
        raise BuildError(f"{path}: DeCap's LM must be an lm.gpt2 decoder, got {type(lm).__name__}")
    return lm


def _load_lm(source: str) -> nn.Module:
    import cl_lm

    return cl_lm.load_lm(source)


# -- texts of the memory and the entity vocabulary -----------------------------------------------------------------


def _splits(dataset: Any, names: Sequence[str], where: str) -> list[tuple[str, Any]]:
    if dataset is None:
        raise DataError(f"{where}: these texts come from the spec's [data], and there is none")
    splits = dataset.splits()
    missing = [n for n in names if n not in splits]
    if missing:
        raise DataError(f"{where}: no split {missing[0]!r}; the data has {', '.join(splits)}")
    return [(n, splits[n]) for n in names]


def _field_texts(source: Any, field: str, split: str, where: str) -> list[str]:
    texts = getattr(source, "texts", None)
    if texts is not None and field == "text":
        return [str(t) for t in texts]
    if len(source) and field not in source.fields:
        raise DataError(f"{where}: split {split!r} has no field {field!r}; its fields: {', '.join(source.fields)}")
    out: list[str] = []
    for start in range(0, len(source), 4096):
        out += [str(t) for t in source.get(list(range(start, min(len(source), start + 4096))))[field]]
    return out


def _class_names(source: Any, split: str, where: str) -> list[str]:
    names = getattr(source, "class_names", None)
    if names is None:
        raise DataError(f"{where}: split {split!r} has no class names")
    return [str(n) for n in names]


def memory_texts(params: DeCapParams, dataset: Any, path: str) -> list[str]:
    """The distinct texts of the memory in first-seen order: the ``memory_splits``' ``memory_field``, the
    ``memory_files``' lines, the class names of ``memory_names``; at most ``max_memory``, evenly spaced.

    Raises:
        DataError: a split or field the data lacks, unreadable files, or no text at all.
    """
    texts: list[str] = []
    if params.memory_splits:
        for name, source in _splits(dataset, params.memory_splits, f"{path}.memory_splits"):
            texts += _field_texts(source, params.memory_field, name, f"{path}.memory_field")
    texts += read_lines(params.memory_files)
    if params.memory_names:
        for name, source in _splits(dataset, params.memory_names, f"{path}.memory_names"):
            texts += _class_names(source, name, f"{path}.memory_names")
    out = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if not out:
        raise DataError(f"{path}: the memory has no texts (memory_splits, memory_files and memory_names give none)")
    if params.max_memory is not None and len(out) > params.max_memory:
        keep = torch.linspace(0, len(out) - 1, params.max_memory).round().long().unique().tolist()
        out = [out[i] for i in keep]
    return out


def entity_names(params: DeCapParams, dataset: Any, path: str) -> list[str]:
    """The entity vocabulary: the class names of ``entity_splits`` (default every split), then the lines of
    ``entity_files``; distinct, in first-seen order.

    Raises:
        DataError: a split without class names, unreadable files, or no name at all.
    """
    names: list[str] = []
    if params.entity_splits is None:
        if dataset is not None:
            for split, source in dataset.splits().items():
                names += [str(n) for n in getattr(source, "class_names", None) or []]
    elif params.entity_splits:
        for split, source in _splits(dataset, params.entity_splits, f"{path}.entity_splits"):
            names += _class_names(source, split, f"{path}.entity_splits")
    names += read_lines(params.entity_files)
    out = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not out:
        raise DataError(f"{path}: the entity vocabulary has no names (the data's splits have no class names and "
                        "entity_files give none)")
    return out


def embed_names(encoder: Any, names: Sequence[str], templates: Sequence[str], batch_size: int) -> Tensor:
    """``[E, N]`` unit-norm embeddings of names: the mean over ``templates`` of the normalised embeddings of
    ``template.format(name)``, normalised (CLIP's prompt ensembling)."""
    total = None
    for template in templates:
        e = F.normalize(encoder.embed([template.format(n) for n in names], batch_size=batch_size).float(), dim=-1)
        total = e if total is None else total + e
    assert total is not None
    return F.normalize(total, dim=-1)


# -- the factory --------------------------------------------------------------------------------------------------


def _from_run_source(ctx: Any, role: str) -> str | None:
    ref = ctx.spec.encoders.get(role) if ctx.spec is not None else None
    if ref is None or ref.type != "core.from-run":
        return None
    return getattr(ref.params, "source", None)


def _check_roles(params: DeCapParams, ctx: Any, path: str) -> tuple[Any, Any, str | None]:
    """(text tower, image tower or None, image role or None), with every role mistake a located spec error."""
    roles = list(ctx.spec.encoders) if ctx.spec is not None else list(ctx.encoders or {})
    if ctx.spec is not None and params.text_role not in ctx.spec.encoders:
        raise spec_problem(ctx, f"{path}.text_role", f"no encoder role {params.text_role!r}; encoder roles: "
                           f"{', '.join(roles) or 'none'}")
    text = (ctx.encoders or {}).get(params.text_role)
    if text is None:
        raise BuildError(f"{path}: DeCap embeds its captions, memory and entity names with the encoder of role "
                         f"{params.text_role!r}, and none is built")
    image_role = params.image_role
    if image_role is None and "image" in roles and params.text_role != "image":
        image_role = "image"
    if image_role is not None and image_role not in roles:
        raise spec_problem(ctx, f"{path}.image_role", f"no encoder role {image_role!r}; encoder roles: "
                           f"{', '.join(roles) or 'none'}")
    image = (ctx.encoders or {}).get(image_role) if image_role else None
    if image is not None and image.embed_dim != text.embed_dim:
        raise spec_problem(ctx, f"{path}.image_role", f"the {image_role!r} tower gives {image.embed_dim}-dim "
                           f"embeddings and the {params.text_role!r} tower {text.embed_dim}-dim ones: they are not one "
                           "contrastive space", "take both towers from the same contrastive run")
    if ctx.spec is not None and image_role:
        a, b = _from_run_source(ctx, params.text_role), _from_run_source(ctx, image_role)
        if a is not None and b is not None and _same(a) != _same(b):
            raise spec_problem(ctx, f"{path}.image_role", f"the {image_role!r} tower comes from {b} and the "
                               f"{params.text_role!r} tower from {a}: DeCap projects one model's image embeddings onto "
                               "the same model's text embeddings", "take both towers from the same run")
    if ctx.spec is not None and ctx.spec.trains and any(q.requires_grad for q in text.parameters()):
        raise spec_problem(ctx, f"{path}.text_role", f"the encoder of role {params.text_role!r} trains in this spec; "
                           "DeCap's memory is embedded once, when the pipeline is built, and its training condition "
                           "is the frozen text embedding", "freeze it (type = \"core.from-run\", freeze = true)")
    return text, image, image_role


def _same(source: str) -> str:
    folder = Path(source).expanduser()
    return str(folder.resolve()) if folder.exists() else source


def build_decap(params: DeCapParams, ctx: Any) -> DeCap:
    """Factory of ``decap.decap``: checks the roles, builds the LM (pretrained or from scratch), embeds the memory
    and the entity names with the frozen text tower, records the towers' digests, and checks that the rows fit the
    LM's context. A pipeline built to load saved weights without its data (``from_pretrained``) gets an empty
    memory and vocabulary that take the saved ones.

    Raises:
        SpecError: a role that is not an encoder role, a text tower that trains, towers of two different runs or
            widths; ``max_length`` (plus the hard prompt) beyond the LM's context.
        BuildError / DataError: the LM cannot be loaded, missing data or texts, unreadable files.
    """
    path = ctx.path or "decoder"
    text, image, image_role = _check_roles(params, ctx, path)
    width = int(text.embed_dim)
    lm = build_lm(params, ctx, path)
    loading = bool(ctx.weights_follow) and ctx.dataset is None
    if loading:
        memory = TextMemory([], torch.zeros(0, width))
        entities = EntityVocabulary([], torch.zeros(0, width)) if params.entities else None
    else:
        texts = memory_texts(params, ctx.dataset, path)
        memory = TextMemory(texts, text.embed(texts, batch_size=params.memory_batch_size))
        entities = None
        if params.entities:
            names = entity_names(params, ctx.dataset, path)
            entities = EntityVocabulary(names, embed_names(text, names, params.entity_prompts,
                                                           params.memory_batch_size))
    towers = {params.text_role: text, **({image_role: image} if image_role and image is not None else {})}
    decoder = DeCap(params, lm, width, memory, entities, towers=towers)
    object.__setattr__(decoder, "_image_role_name", image_role)
    if not ctx.weights_follow:
        decoder.record_space(text, image)
    if not loading and lm.context < params.max_length + decoder.longest_prompt():
        prompt = decoder.longest_prompt()
        raise spec_problem(ctx, f"{path}.max_length", f"a training row of max_length = {params.max_length} tokens"
                           + (f" after a hard prompt of up to {prompt} tokens and the prefix" if prompt else
                              " after the prefix")
                           + f" exceeds the LM's context of {lm.context} positions",
                           f"use max_length <= {lm.context - prompt}" + (" or fewer entities" if prompt else "")
                           if lm.context - prompt >= 3 else "use fewer entities, or an LM with a longer context")
    return decoder
