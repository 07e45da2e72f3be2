"""Test helpers of cl-lm (imported by its tests and usable by plugins that build on it): tiny random-weight
GPT-2 models, offline and CPU-fast."""

from __future__ import annotations

from typing import Any

import torch


def random_gpt2(seed: int = 0, *, vocab: int = 60, width: int = 32, layers: int = 2, heads: int = 2,
                context: int = 64, eos: int = 1, pad: int = 2, eos_boost: float = 2.5):
    """A ``GPT2LMHeadModel`` with random weights (eval mode, untied output layer). The weights are drawn wide
    (std 0.3) so the next-token distributions are peaked, not near-uniform (no near-ties for argmax to flip on),
    and ``eos_boost`` gives the end token a logit of about ``eos_boost * (1 + z)``, z ~ N(0, 1) per position, so
    rows end at different steps."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_positions=context, n_embd=width, n_layer=layers, n_head=heads,
                        bos_token_id=eos, eos_token_id=eos, pad_token_id=pad, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, initializer_range=0.3, tie_word_embeddings=False)
    model = GPT2LMHeadModel(config).eval()
    if eos_boost:
        with torch.no_grad():
            model.lm_head.weight[eos].zero_()
            model.lm_head.weight[eos, 0] = eos_boost
            model.transformer.ln_f.weight[0] = 1.0
            model.transformer.ln_f.bias[0] = 1.0
    return model


def tiny_lm(seed: int = 0, **params: Any) -> Any:
    """An ``lm.gpt2`` decoder with the byte tokenizer: 2 blocks of width 32, context 48 (eval mode);
    ``params`` override :class:`~cl_lm.params.GPT2Params` fields."""
    from .model import GPT2Decoder
    from .params import GPT2Params
    from .tokenizer import bytes_tokenizer

    torch.manual_seed(seed)
    values = dict(tokenizer="bytes", context=48, layers=2, width=32, heads=2)
    values.update(params)
    return GPT2Decoder(GPT2Params(**values), bytes_tokenizer()).eval()
