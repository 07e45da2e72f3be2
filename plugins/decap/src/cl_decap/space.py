"""The identity of a contrastive model's space: digests of its towers' weights.

A DeCap decoder is trained on the text embeddings of one model and decodes the image embeddings of the same model;
paired with another model's towers it would decode nonsense without a sign of trouble. So it records, in two
``uint8 [32]`` buffers, the SHA-256 of the weights of the text tower and of the image tower it was trained with
(:func:`tower_digest`), and checks them against the towers of a pipeline it is loaded into.

A digest hashes every tensor of the tower's state dict (dtype, shape and bytes, on the CPU) in the order of their
sorted names, so it is the same on every device and for the same weights under another wrapper prefix.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn

#: bytes of a digest; all zeros means "not recorded"
DIGEST_BYTES = 32


def tower_digest(module: nn.Module) -> Tensor:
    """SHA-256 of a module's state dict as a ``uint8 [32]`` tensor (module docstring)."""
    h = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        value = state[name]
        if not isinstance(value, Tensor):
            continue
        t = value.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return torch.frombuffer(bytearray(h.digest()), dtype=torch.uint8).clone()


def unknown() -> Tensor:
    """The digest of a tower that was not recorded (all zeros)."""
    return torch.zeros(DIGEST_BYTES, dtype=torch.uint8)


def is_known(digest: Tensor) -> bool:
    return bool(digest.numel() == DIGEST_BYTES and digest.any())


def short(digest: Tensor) -> str:
    """The first 12 hex digits of a digest (for messages)."""
    return bytes(digest.cpu().tolist()).hex()[:12] if is_known(digest) else "unrecorded"
