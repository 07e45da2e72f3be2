"""The embedding space a decoder is trained in, and the two CapDec operations on it.

* :func:`tower_digest`: a 63-bit digest of an encoder's weights, the identity of the space it embeds into (a
  decoder trained on one tower's embeddings refuses another's);
* :func:`noise_injection`: CapDec's training-time noise (Nukrai et al., 2022, sec. 3; ``train.py:
  noise_injection``): x / |x| + eps, eps ~ N(0, variance I), re-normalised;
* :func:`modality_offset`: CapDec's modality offset, mean(text / |text|) - mean(image / |image|) (``others/
  modality_offset_calculator.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def tower_digest(module: nn.Module) -> int:
    """The first 63 bits (in [1, 2**63)) of :func:`cl_core.api.tower_digest` of ``module``: its floating-point
    weights and buffers in state-dict order, names left out (a tower wrapped as a frozen encoder digests as itself).
    Two towers with the same digest embed every item the same way."""
    from cl_core.api import tower_digest as full_digest

    return int.from_bytes(bytes.fromhex(full_digest(module))[:8], "big") & (2**63 - 1) or 1


def noise_injection(x: Tensor, variance: float, *, generator: torch.Generator | None = None) -> Tensor:
    """CapDec's noise injection: ``normalize(normalize(x) + eps)``, eps ~ N(0, variance) per coordinate.

    Args:
        x: ``[B, N]`` embeddings.
        variance: the noise variance per coordinate (CapDec's best: 0.016, std 0.126); 0 returns ``x``
            normalised.
        generator: the draws' generator (default: torch's global one, which checkpoints restore).

    Returns:
        ``[B, N]`` unit-norm rows.
    """
    x = F.normalize(x, dim=-1)
    if variance == 0:
        return x
    noise = torch.randn(x.shape, generator=generator, device="cpu" if generator is not None else x.device,
                        dtype=x.dtype).to(x.device)
    return F.normalize(x + noise * math.sqrt(variance), dim=-1)


def modality_offset(text: Tensor, image: Tensor) -> Tensor:
    """``[N]``: the centre of the normalised text embeddings ``text [T, N]`` minus that of the normalised image
    embeddings ``image [I, N]``; added to a normalised image embedding it moves it towards the text region
    (CapDec's ``offset_to_add_in_inference``).

    Raises:
        ValueError: either set is empty or their widths differ.
    """
    if text.dim() != 2 or image.dim() != 2 or not len(text) or not len(image) or text.shape[1] != image.shape[1]:
        raise ValueError(f"the offset needs [T, N] text and [I, N] image embeddings, got {list(text.shape)} and "
                         f"{list(image.shape)}")
    return F.normalize(text.float(), dim=-1).mean(0) - F.normalize(image.float(), dim=-1).mean(0)
