"""``coca.text``: CoCa's unimodal text decoder, the text tower (Yu et al., 2022, §3.2).

``<bos> caption <eos>`` (padded on the right) -> token and position embeddings -> ``layers`` causal blocks with no
cross-attention, with a learned CLS token appended after the padding. The CLS attends to the caption's real tokens
and to itself, never to padding (open_clip put the CLS mask at the wrong end in its first CoCa release,
open_clip#549, and keeps ``correct_cls_mask`` for the fix); the CLS carries no position, so the same caption padded
to any length gives the same embedding. Its output, layer-normed and projected, is the text embedding; the states of
the caption's positions are what ``coca.captioner`` continues (:attr:`~cl_core.types.EncoderOutput.tokens`, with
the ids in ``extras["ids"]``), in the same pass.

Started from a ``cl-lm`` run (``lm``): its tokenizer, token and position embeddings and first ``layers`` blocks;
the captioner takes the following blocks and the final norm (:attr:`CoCaText.lm_rest`). The tokenizer travels in
the state dict (``tokenizer_json``, as ``lm.gpt2``'s), so a saved CoCa loads without the LM run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor, nn

from cl_core.api import BuildError, ClError, Encoder, EncoderOutput, FrozenParts, folder_or_hub_id
from cl_lm.tokenizer import LMTokenizer, bytes_tokenizer

from .layers import Block
from .params import CoCaTextParams

#: width, heads and positions of a tower with neither an LM nor sizes given (tests)
DEFAULT_SIZES = {"width": 64, "heads": 2, "context": 64}


class CoCaText(FrozenParts, Encoder):
    """Texts -> ``[B, embed_dim]`` (the CLS output), and from :meth:`encode_states` the caption positions' states
    ``[B, T, D]`` with their mask and ids.

    Attributes:
        token_embedding: ``[V, D]`` (the captioner's output layer is tied to it).
        position_embedding: ``[context, D]``.
        blocks: the unimodal :class:`~cl_coca.layers.Block` list.
        cls: ``[D]`` the appended CLS token.
        ln_cls, proj: the CLS output's LayerNorm and its projection to the joint space.
        tokenizer_json: ``uint8`` buffer, the serialised tokenizer.
        lm_rest: when built from an LM: the state dicts of the LM's blocks after this tower's and of its final norm
            (``{"blocks": [...], "ln_f": {...}}``) for the captioner to start from; not saved.
    """

    modality: ClassVar[str] = "text"
    provides_tokens: ClassVar[bool] = True

    def __init__(self, params: CoCaTextParams, tokenizer: LMTokenizer, *, width: int, heads: int,
                 context: int) -> None:
        super().__init__()
        self.params = params
        self._tokenizer = tokenizer
        self.width, self.heads, self.context = width, heads, context
        self.token_embedding = nn.Embedding(tokenizer.vocab_size, width)
        self.position_embedding = nn.Embedding(context, width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.01)
        self.blocks = nn.ModuleList(Block(width, heads, dropout=params.dropout) for _ in range(params.layers))
        self.cls = nn.Parameter(torch.randn(width) * 0.02)
        self.ln_cls = nn.LayerNorm(width)
        self.proj = nn.Linear(width, params.embed_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=width**-0.5)
        self.register_buffer("tokenizer_json", torch.from_numpy(tokenizer.to_bytes()))
        self.lm_rest: dict[str, Any] | None = None
        if params.freeze:
            self.freeze_parts(self.token_embedding, self.position_embedding, self.blocks)

    @property
    def embed_dim(self) -> int:
        return self.params.embed_dim

    @property
    def tokenizer(self) -> LMTokenizer:
        """The :class:`~cl_lm.tokenizer.LMTokenizer` (the saved one after a load)."""
        return self._tokenizer

    # -- the data path ------------------------------------------------------------------------------------------------
    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:
        """Texts -> ``ids`` ``[B, T]`` int64 (``<bos>`` text ``<eos>``, cut to the context, pad after) and ``mask``
        ``[B, T]`` bool (True at real tokens).

        Raises:
            ValueError: no texts, or an item that is not a string.
        """
        if len(items) == 0:
            raise ValueError("no texts given")
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}]: expected a string, got {type(t).__name__}")
        tok = self._tokenizer
        rows = [([tok.bos_id] + ids)[: self.context - 1] + [tok.eos_id] for ids in tok.ids(list(items))]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = True
        return {"ids": ids, "mask": mask}

    # -- the tower ------------------------------------------------------------------------------------------------------
    def embed_positions(self, ids: Tensor, positions: Tensor) -> Tensor:
        """Token plus position embeddings ``[B, T, D]`` of ``ids`` at ``positions`` (both ``[B, T]``)."""
        return self.token_embedding(ids) + self.position_embedding(positions)

    def run(self, x: Tensor, mask: Tensor | None, past: Sequence[tuple[Tensor, Tensor]] | None = None
            ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """The unimodal blocks on embedded positions ``x [B, T, D]`` (``mask``: see
        :meth:`cl_coca.layers.Block.forward`), with the KV cache ``past`` of earlier positions; returns the states
        and every block's keys and values."""
        cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, mask, past=None if past is None else past[i])
            cache.append(kv)
        return x, cache

    def _encode_states(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        ids, mask = inputs["ids"], inputs["mask"].bool()
        b, t = ids.shape
        if t > self.context:
            raise ValueError(f"texts of {t} tokens exceed the tower's context of {self.context}")
        positions = torch.arange(t, device=ids.device).expand(b, t)
        x = torch.cat([self.embed_positions(ids, positions), self.cls.to(self.token_embedding.weight.dtype)
                       .expand(b, 1, -1)], dim=1)
        allowed = torch.ones(t + 1, t + 1, dtype=torch.bool, device=ids.device).tril().expand(b, -1, -1).clone()
        allowed[:, t, :t] = mask  # the CLS row: the real tokens and itself, never the padding
        states, _ = self.run(x, allowed)
        embedding = self.proj(self.ln_cls(states[:, t]))
        return EncoderOutput(embedding, tokens=states[:, :t], mask=mask, extras={"ids": ids})

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self._encode_states(inputs).embedding

    # -- loading ----------------------------------------------------------------------------------------------------------
    def resize_to_saved(self, saved: Mapping[str, Tensor]) -> None:
        """Take the saved tokenizer's size and vocabulary before a strict load (``cl_core.weights``): a run whose
        LM run is not here loads from its own weights."""
        blob = saved.get("tokenizer_json")
        if blob is not None and blob.shape != self.tokenizer_json.shape:
            self.tokenizer_json = torch.empty(blob.shape, dtype=torch.uint8)
        rows = saved.get("token_embedding.weight")
        if rows is not None and rows.shape != self.token_embedding.weight.shape:
            self.token_embedding = nn.Embedding(int(rows.shape[0]), int(rows.shape[1]))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        try:
            self._tokenizer = LMTokenizer.from_bytes(self.tokenizer_json.cpu().numpy())
        except ValueError as exc:
            raise ValueError(f"{prefix}tokenizer_json: {exc}") from None

    @torch.no_grad()
    def start_from_lm(self, lm: Any) -> None:
        """Copy a ``lm.gpt2`` decoder's embeddings and first blocks into the tower, and keep the rest for the
        captioner (:attr:`lm_rest`).

        Raises:
            ValueError: the LM has fewer blocks than the tower, or a shape differs.
        """
        transformer = lm.model.transformer
        if len(transformer.h) < len(self.blocks):
            raise ValueError(f"the LM has {len(transformer.h)} blocks, fewer than the tower's {len(self.blocks)}")
        self.token_embedding.weight.copy_(transformer.wte.weight)
        self.position_embedding.weight.copy_(transformer.wpe.weight[: self.context])
        for block, source in zip(self.blocks, transformer.h):
            block.load_gpt2(source.state_dict())
        self.lm_rest = {"blocks": [b.state_dict() for b in transformer.h[len(self.blocks):]],
                        "ln_f": transformer.ln_f.state_dict()}


def _lm_sizes(lm: Any) -> dict[str, int]:
    config = lm.model.config
    return {"width": int(config.n_embd), "heads": int(config.n_head), "context": int(config.n_positions)}


def build_text(params: CoCaTextParams, ctx: Any) -> CoCaText:
    """Factory of ``coca.text``: from the LM run (its sizes pinned into the saved spec, so the saved run rebuilds
    the tower without it), or from random weights.

    Raises:
        SpecError: ``width``, ``heads`` or ``context`` differ from the LM's; heads that do not divide the width.
        BuildError: the LM run cannot be loaded, or it has fewer blocks than ``layers``.
    """
    from cl_core.api import spec_problem

    path = ctx.path or "encoders.text"
    given = {k: getattr(params, k) for k in DEFAULT_SIZES}
    lm = None
    if params.lm is not None and not (ctx.weights_follow and None not in given.values()):
        import cl_lm

        try:
            folder_or_hub_id()(None, None, params.lm)
            lm = cl_lm.load_lm(params.lm)
        except (ClError, ValueError) as exc:
            raise BuildError(f"{path}.lm: {exc}") from None
    if lm is not None:
        sizes = _lm_sizes(lm)
        for key, value in given.items():
            if value is not None and value != sizes[key]:
                raise spec_problem(ctx, f"{path}.{key}", f"{value}, and the LM {params.lm} has {key} {sizes[key]} "
                                   "(the tower starts from its blocks)", f"leave {key} out")
        tokenizer = lm.tokenizer
    else:
        sizes = {k: v if v is not None else DEFAULT_SIZES[k] for k, v in given.items()}
        tokenizer = bytes_tokenizer()
    if sizes["width"] % sizes["heads"]:
        raise spec_problem(ctx, f"{path}.heads", f"{sizes['heads']} heads do not divide the width {sizes['width']}")
    tower = CoCaText(params, tokenizer, **sizes)
    if lm is not None:
        try:
            tower.start_from_lm(lm)
        except ValueError as exc:
            raise BuildError(f"{path}.layers: {exc}") from None
    ctx.pin(attrs.evolve(params, **sizes))
    return tower
