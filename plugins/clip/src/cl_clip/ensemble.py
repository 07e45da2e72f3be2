"""``clip.efficientnet-ensemble``: several pretrained EfficientNet-Lite towers as one image encoder.

Each member is a :class:`~cl_clip.efficientnet.EfficientNetLite` with its own trunk, input size, pooled
blocks, head and feature cache. The ensemble's embedding is the sum of the members' L2-normalised
embeddings, and the contrastive loss trains every head through that sum (so the heads learn to
complement each other). This is the embedding-level ensemble of frozen backbones, the image-side
analogue of a prompt ensemble. On the emoji main job three frozen trunks (Lite0 at 160 px, Lite2 at 260,
Lite1 at 240) with class descriptions reach held-out zero-shot top-1 0.366 / 0.353 (Noto / OpenMoji, mean
of 8 seeds), where one Lite0 trunk reached 0.336 / 0.297 and an ensemble of six seeds of the one-trunk
head gained nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from cl_core.api import Encoder

from .efficientnet import EfficientNetLite
from .image_tower import prepare_shared
from .params import EfficientNetEnsembleParams
from .preprocess import image_digest


class EfficientNetEnsemble(Encoder):
    """Images -> ``[B, embed_dim]``: the sum over members of ``normalize(member(images))``.

    :meth:`prepare` runs each member's preprocessing (its own input size) and prefixes the member's
    keys with its index: ``{"0.pixels": [B, 3, S0, S0], "1.pixels": [B, 3, S1, S1], ...}`` plus
    ``"<i>.key"`` when the member caches features (and ``"<i>.ready"`` when rows its cache serves are left
    out, see :class:`~cl_clip.image_tower.ImageTower`).
    """

    modality: ClassVar[str] = "image"

    def __init__(self, params: EfficientNetEnsembleParams) -> None:
        super().__init__()
        self.params = params
        self.members = nn.ModuleList([EfficientNetLite(params.member(trunk)) for trunk in params.trunks])

    @property
    def embed_dim(self) -> int:
        return self.params.embed_dim

    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:
        """PIL images or uint8 ``[H, W, 3]`` arrays -> every member's prepared tensors, keys prefixed ``"<i>."``."""
        groups: dict[tuple, list[int]] = {}  # members of one input size (and resize mode) share the work
        for i, member in enumerate(self.members):
            groups.setdefault((member.preprocessing, member.wants_keys, member.leaves_out_cached_rows), []).append(i)
        # Each image is hashed once for every member's cache keys.
        digests = [image_digest(item, i) for i, item in enumerate(items)] if any(
            member.wants_keys for member in self.members) else None
        out: dict[str, Tensor] = {}
        for indices in groups.values():
            done = prepare_shared([self.members[i] for i in indices], items, digests)
            for i in indices:
                out.update({f"{i}.{name}": value for name, value in done.items()})
        return out

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        total = None
        for i, member in enumerate(self.members):
            prefix = f"{i}."
            own = {name[len(prefix):]: value for name, value in inputs.items() if name.startswith(prefix)}
            if "pixels" not in own:
                raise KeyError(f"inputs lack '{prefix}pixels' (prepare them with this ensemble's prepare())")
            embedding = F.normalize(member.encode(own), dim=-1)
            total = embedding if total is None else total + embedding
        return total


def build_efficientnet_ensemble(params: EfficientNetEnsembleParams, ctx) -> EfficientNetEnsemble:
    return EfficientNetEnsemble(params)
