"""``coca.captioner``: CoCa's multimodal text decoder (Yu et al., 2022, §3.2) as a trainable
:class:`~cl_core.api.Decoder`.

Each block is causal self-attention, cross-attention to the image's captioning tokens (``coca.image``'s captioning
pooler) and an MLP; the blocks continue the unimodal text tower's states (``coca.text``), then the final norm and an
output layer tied to the tower's token embeddings give next-token logits. Training (``core.caption`` with a decoder
that ``reads_target_states``): the caption cross-entropy of ``logits[:, :-1]`` against ``ids[:, 1:]`` over real
tokens, on the same text pass that gives the text embedding (open_clip's ``CoCaLoss`` shifts the same way and
ignores the pad id; here the mask decides, since the BPE's pad is its end token). Generation: the whole text
decoder, unimodal then multimodal blocks, under ``cl-lm``'s decoding loop (:func:`cl_lm.generate.generate`: greedy,
beam search, sampling, stop strings) with a KV cache that also keeps each block's keys and values of the image
tokens (:class:`Stepper`).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cl_core.api import BuildError, Decoder, EncoderOutput, LossOutput, spec_problem
from cl_lm.generate import Decoding, decoding_of, generate

from .layers import Block
from .params import CoCaCaptionerParams
from .text import CoCaText

#: label of a position that is not a target
IGNORE = -100


class CoCaCaptioner(Decoder):
    """See the module docstring.

    Attributes:
        params: the :class:`~cl_coca.params.CoCaCaptionerParams`.
        text: the ``coca.text`` tower it continues (the pipeline's encoder of ``text_role``; referred to, not
            registered: its weights are saved once, under the encoder).
        blocks: the multimodal :class:`~cl_coca.layers.Block` list (``cross = True``).
        ln_f: the final LayerNorm.
    """

    trainable = True
    reads_tokens = True
    reads_target_states = True

    def __init__(self, params: CoCaCaptionerParams, text: CoCaText) -> None:
        super().__init__()
        self.params = params
        self.target_role = params.text_role
        vars(self)["text"] = text
        self.blocks = nn.ModuleList(Block(text.width, text.heads, cross=True, dropout=params.dropout)
                                    for _ in range(params.layers))
        self.ln_f = nn.LayerNorm(text.width)

    @torch.no_grad()
    def start_from_lm(self, rest: dict[str, Any]) -> int:
        """Load the LM's blocks after the tower's (as many as both have) and its final norm; returns how many."""
        loaded = 0
        for block, state in zip(self.blocks, rest["blocks"]):
            block.load_gpt2(state)
            loaded += 1
        self.ln_f.load_state_dict(rest["ln_f"])
        return loaded

    def logits(self, states: Tensor, memory: Tensor) -> Tensor:
        """Next-token logits ``[B, T, V]`` of unimodal states ``[B, T, D]`` (causal) given image tokens ``[B, M, D]``."""
        for block in self.blocks:
            states, _ = block(states, None, memory_kv=block.memory_kv(memory))
        return self.ln_f(states) @ self.text.token_embedding.weight.t()

    def _caption_loss_from_states(self, condition: EncoderOutput, text: EncoderOutput) -> LossOutput:
        memory, (states, mask) = self._memory(condition.tokens), (text.tokens, text.mask)
        ids = text.extras.get("ids")
        if ids is None or mask is None:
            raise ValueError("coca.captioner reads the text tower's ids and mask (extras['ids'], mask)")
        logits = self.logits(states, memory)[:, :-1]
        labels = ids[:, 1:].masked_fill(~mask[:, 1:].bool(), IGNORE)
        value = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE)
        return LossOutput(value)

    def _memory(self, memory: Tensor | None) -> Tensor:
        """The image's captioning tokens ``[B, M, D]``, checked."""
        if memory is None:
            raise ValueError("coca.captioner cross-attends to the image's captioning tokens; none were given")
        if memory.dim() != 3 or memory.shape[-1] != self.text.width:
            raise ValueError(f"captioning tokens must be [B, M, {self.text.width}], got {list(memory.shape)}")
        return memory

    # -- generation ---------------------------------------------------------------------------------------------------
    def settings(self, **overrides: Any) -> Decoding:
        """The :class:`~cl_lm.generate.Decoding` of the params, with ``overrides``."""
        return decoding_of(self.params, **overrides)

    def _decode(self, embeddings: Tensor, *, max_length: int) -> list[str]:
        raise ValueError("coca.captioner reads the image's captioning tokens: decode an encode_states() output")

    def _decode_output(self, condition: EncoderOutput, *, max_length: int) -> list[str]:
        return self.generate(condition.tokens, max_new_tokens=max_length).texts

    def generate(self, memory: Tensor, **settings: Any) -> Any:
        """Captions of image tokens ``memory [B, M, D]`` from ``<bos>``: a :class:`~cl_lm.generate.Generated`.
        ``settings``: :class:`~cl_lm.generate.Decoding` fields over the params (``max_new_tokens = 32`` unless
        given)."""
        memory = self._memory(memory)
        s = self.settings(**settings)
        tok = self.text.tokenizer
        stepper = Stepper(self, memory)
        # one chunk, with the KV cache: the stepper's image tokens are this batch's, and only the cache reorders them
        # with the rows (callers batch the images)
        s = attrs.evolve(s, batch_size=max(s.batch_size, len(memory) * s.beam_size), use_cache=True)
        return generate(stepper, eos_id=tok.eos_id, pad_id=tok.pad_id, input_ids=[[tok.bos_id]] * len(memory),
                        settings=s, tokenizer=tok)

    def usage_notes(self, role: str, source: str) -> list[str]:
        return [f"Captions from Python: `cl_coca.load_captioner(\"{source}\").caption(images)`; the contrastive "
                f"towers alone: `cl_coca.load_towers(\"{source}\")`."]


class Stepper(nn.Module):
    """The CoCa text decoder bound to one batch of image tokens, shaped as the ``transformers`` causal LM that
    :func:`cl_lm.generate.generate` drives: ``forward(inputs_embeds, attention_mask, position_ids,
    past_key_values)`` -> ``logits``, ``past_key_values``. The cache is one ``(keys, values)`` pair per unimodal
    block and ``(keys, values, image keys, image values)`` per multimodal block, all batch-first, so the loop's
    row selection (beams, finished rows) reorders the image tokens with the text."""

    def __init__(self, captioner: CoCaCaptioner, memory: Tensor) -> None:
        super().__init__()
        vars(self)["captioner"] = captioner
        vars(self)["memory"] = memory
        self.config = SimpleNamespace(n_positions=captioner.text.context)
        self.training = captioner.training

    def get_input_embeddings(self) -> nn.Embedding:
        return self.captioner.text.token_embedding

    def train(self, mode: bool = True) -> Stepper:
        self.training = mode
        self.captioner.train(mode)
        self.captioner.text.train(mode)
        return self

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor,
                past_key_values: Any = None, use_cache: bool = True, return_dict: bool = True,
                output_hidden_states: bool = False) -> Any:
        text, captioner = self.captioner.text, self.captioner
        x = inputs_embeds + text.position_embedding(position_ids)
        t, total = x.shape[1], attention_mask.shape[1]
        past_len = total - t
        keys = torch.arange(total, device=x.device)
        queries = torch.arange(past_len, total, device=x.device)
        allowed = attention_mask.bool()[:, None, :] & (keys[None, None, :] <= queries[None, :, None])
        allowed |= keys[None, None, :] == queries[None, :, None]  # a left-pad position sees itself: no empty row
        n = len(text.blocks)
        if past_key_values is None:
            unimodal_past, memory_kv = None, [block.memory_kv(self.memory.to(x.dtype)) for block in captioner.blocks]
            multimodal_past: list[Any] = [None] * len(captioner.blocks)
        else:
            unimodal_past = list(past_key_values[:n])
            memory_kv = [(layer[2], layer[3]) for layer in past_key_values[n:]]
            multimodal_past = [(layer[0], layer[1]) for layer in past_key_values[n:]]
        x, cache = text.run(x, allowed, unimodal_past)
        out: list[tuple[Tensor, ...]] = list(cache)
        for block, past, mem in zip(captioner.blocks, multimodal_past, memory_kv):
            x, kv = block(x, allowed, memory_kv=mem, past=past)
            out.append((*kv, *mem))
        logits = captioner.ln_f(x) @ text.token_embedding.weight.t()
        return SimpleNamespace(logits=logits, past_key_values=tuple(out) if use_cache else None,
                               hidden_states=None)


def build_captioner(params: CoCaCaptionerParams, ctx: Any) -> CoCaCaptioner:
    """Factory of ``coca.captioner``: continues the ``coca.text`` encoder of ``text_role``, cross-attends to the
    captioning tokens of the ``coca.image`` encoder of ``condition``, and starts from the LM's later blocks.

    Raises:
        SpecError: a role that is not a CoCa tower of this spec; captioning tokens whose width is not the text's.
    """
    from .image import CoCaImage

    path = ctx.path or "decoder"
    encoders = dict(ctx.encoders or {})
    text = encoders.get(params.text_role)
    if not isinstance(text, CoCaText):
        found = "no encoder" if text is None else f"a {type(text).__name__}"
        raise spec_problem(ctx, f"{path}.text_role", f"role {params.text_role!r} has {found}; the captioner continues "
                                                     "a coca.text tower")
    image = encoders.get(params.condition)
    if image is not None and not isinstance(image, CoCaImage):
        raise spec_problem(ctx, f"{path}.condition", f"role {params.condition!r} has a {type(image).__name__}; the "
                                                     "captioner cross-attends to a coca.image tower's tokens")
    if isinstance(image, CoCaImage) and image.caption_width != text.width:
        raise spec_problem(ctx, f"encoders.{params.condition}.caption_width",
                           f"{image.caption_width}, and the text decoder is {text.width} wide (the captioner "
                           "cross-attends to these tokens)", f"caption_width = {text.width}")
    try:
        captioner = CoCaCaptioner(params, text)
    except ValueError as exc:
        raise BuildError(f"{path}: {exc}") from None
    if text.lm_rest is not None and not ctx.weights_follow:
        captioner.start_from_lm(text.lm_rest)
    return captioner
