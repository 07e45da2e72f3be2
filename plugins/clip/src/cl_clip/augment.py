"""Cheap on-device training augmentation for the image towers (kornia warp + elementwise colour jitter).

Per image: a random resized crop (area fraction in ``scale``, aspect ratio in ``ratio``) combined with a
small rotation (uniform in +-``degrees``) is applied as **one** affine warp (``kornia.geometry``
``warp_affine``, border padding so a white emoji background stays white), then, with probability
``p_color``, brightness, contrast and saturation jitter. Hue is not jittered: on CPU kornia's hue
jitter costs about 5x the rest together, and the colour of an emoji often *is* its meaning
("red heart" vs "blue heart").

Inputs and outputs are normalised pixels; the warp and the colour map work on them directly (both are
affine per channel, so they commute with the normalisation), and the result is clipped to the
normalised image of [0, 1]. Random numbers come from torch's global generator (seeded by the trainer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class ImageAugment(nn.Module):
    """Random resized crop + rotation (one warp) and colour jitter on a batch ``[B, 3, H, W]``.

    Args:
        mean, std: the normalisation of the incoming pixels (per channel).
        scale: range of the crop's area as a fraction of the image (RandomResizedCrop's ``scale``).
        ratio: range of the crop's aspect ratio (width / height), sampled log-uniformly.
        degrees: maximum absolute rotation in degrees.
        jitter: maximum relative change of brightness, contrast and saturation (factor in 1 +- jitter).
        p_color: probability that an image gets colour jitter.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        scale: tuple[float, float] = (0.8, 1.0),
        ratio: tuple[float, float] = (0.9, 1.1),
        degrees: float = 10.0,
        jitter: float = 0.2,
        p_color: float = 0.8,
    ) -> None:
        super().__init__()
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        self.scale, self.ratio, self.degrees, self.jitter, self.p_color = scale, ratio, degrees, jitter, p_color
        # Non-persistent: the statistics come from the params, they are not learned state.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]), persistent=False)

    def _matrices(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        """``[B, 2, 3]`` source->destination affine matrices in pixel coordinates."""
        u = torch.rand(b, 4, device=device)
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0]
        log_r = math.log(self.ratio[0]) + (math.log(self.ratio[1]) - math.log(self.ratio[0])) * u[:, 1]
        r = log_r.exp()
        sx = (area * r).sqrt().clamp(max=1.0)  # crop width / image width
        sy = (area / r).sqrt().clamp(max=1.0)
        theta = (2 * u[:, 2] - 1) * math.radians(self.degrees)
        shift = torch.rand(b, 2, device=device) * 2 - 1
        cx = (w - 1) / 2 + shift[:, 0] * (1 - sx) * w / 2  # crop centre, kept inside the image
        cy = (h - 1) / 2 + shift[:, 1] * (1 - sy) * h / 2
        cos, sin = theta.cos(), theta.sin()
        # dst -> src map A: src = c + R(theta) diag(sx, sy) (dst - o); warp_affine wants src -> dst = A^-1.
        a = torch.zeros(b, 3, 3, device=device)
        a[:, 0, 0], a[:, 0, 1] = cos * sx, -sin * sy
        a[:, 1, 0], a[:, 1, 1] = sin * sx, cos * sy
        ox, oy = (w - 1) / 2, (h - 1) / 2
        a[:, 0, 2] = cx - (a[:, 0, 0] * ox + a[:, 0, 1] * oy)
        a[:, 1, 2] = cy - (a[:, 1, 0] * ox + a[:, 1, 1] * oy)
        a[:, 2, 2] = 1.0
        return torch.linalg.inv(a)[:, :2, :]

    def _color_map(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-image colour jitter of normalised ``x [B, 3, H, W]`` as an affine map ``(A [B, 3, 3], o [B, 3])``.

        In pixel space ([0, 1]) brightness b, contrast c and saturation s applied one after another are
        ``x1 = b x``; ``x2 = m1 + c (x1 - m1)`` with ``m1 = b m0`` the mean gray level (``m0`` that of x);
        ``x3 = g(x2) + s (x2 - g(x2))`` with gray ``g(x) = w . x`` (ITU-R 601 luma weights, summing to 1).
        All are affine, so ``x3 = b c (s I + (1 - s) 1 w^T) x + (1 - c) b m0``. Conjugating with the
        normalisation gives one map on normalised pixels: no full-size temporaries.
        """
        b = x.shape[0]
        dtype, device = x.dtype, x.device
        on = (torch.rand(b, device=device) < self.p_color).to(dtype)
        f = 1 + on[:, None] * self.jitter * (2 * torch.rand(b, 3, device=device, dtype=dtype) - 1)
        bright, contrast, sat = f[:, 0, None, None], f[:, 1, None, None], f[:, 2, None, None]
        mean, std, w = self.mean.view(3).to(dtype), self.std.view(3).to(dtype), self.luma.to(dtype)
        m0 = (x.mean(dim=(2, 3)) * std + mean) @ w  # [B] mean gray level in [0, 1]
        eye = torch.eye(3, device=device, dtype=dtype)
        a = bright * contrast * (sat * eye + (1 - sat) * w[None, :].expand(3, 3))  # [B, 3, 3], pixel space
        o = ((1 - f[:, 1]) * f[:, 0] * m0)[:, None].expand(b, 3)  # [B, 3], pixel space
        # normalised in and out: x = std * z + mean, z' = (x' - mean) / std
        a_n = a * std[None, None, :] / std[None, :, None]
        o_n = (a @ mean + o - mean) / std
        return a_n, o_n

    def forward(self, pixels: Tensor) -> Tensor:
        """Augment normalised pixels ``[B, 3, H, W]``; returns the same shape, normalised, in range."""
        from kornia.geometry.transform import warp_affine

        b, _, h, w = pixels.shape
        x = pixels.float()
        # The warp is linear per channel and pads by replication, so it commutes with the normalisation.
        x = warp_affine(x, self._matrices(b, h, w, x.device), dsize=(h, w), mode="bilinear",
                        padding_mode="border", align_corners=True)
        a, o = self._color_map(x)
        x = torch.einsum("bij,bjhw->bihw", a, x) + o[:, :, None, None]
        lo = (-self.mean / self.std)  # pixel value 0 in normalised units
        hi = ((1 - self.mean) / self.std)
        return torch.maximum(torch.minimum(x, hi), lo).to(pixels.dtype)
