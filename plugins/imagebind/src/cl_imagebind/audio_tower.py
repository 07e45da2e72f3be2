"""``imagebind.audio``: waveforms -> log-mel -> a small CNN -> ``[B, embed_dim]`` (see
:class:`~cl_imagebind.audio_tower_params.AudioTowerParams`).

``prepare`` (CPU, data path) only lays the waveforms out as ``[B, clips, samples]`` float32 with their lengths;
augmentation, the front end and the network run on the device in :meth:`AudioTower._encode`, batched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cl_core.api import DataError, Encoder

from .audio_io import check_audio_files, read_audio
from .audio_tower_params import AudioTowerParams
from .melspec import LogMel


def waveform(item: Any, index: int, sample_rate: int) -> np.ndarray:
    """One item as float32 mono ``[S]`` in [-1, 1]: an int16 / float array at ``sample_rate``, or a WAV path.

    Raises:
        DataError: another type, an array that is not 1-D or is empty (named by its position in the batch), or a
            bad file (named by path).
    """
    if isinstance(item, (str, Path)):
        return read_audio(item, sample_rate=sample_rate)
    if isinstance(item, np.ndarray):
        if item.ndim != 1 or item.size == 0:
            raise DataError(f"audio item {index}: a waveform must be a non-empty 1-D array, got shape {item.shape}")
        if item.dtype == np.int16:
            return item.astype(np.float32) / 32768.0
        if np.issubdtype(item.dtype, np.floating):
            return item.astype(np.float32, copy=False)
        raise DataError(f"audio item {index}: waveform arrays must be int16 or float, got {item.dtype}")
    raise DataError(f"audio item {index}: expected a waveform array or a WAV path, got {type(item).__name__}")


def clip_windows(length: int, clip: int, clips: int) -> list[int]:
    """Start sample of each of ``clips`` windows of ``clip`` samples, evenly spaced over ``length`` samples (all
    at 0 when the file is no longer than one window)."""
    if length <= clip or clips == 1:
        return [0] * clips if length <= clip else [(length - clip) // 2]
    return [round(i * (length - clip) / (clips - 1)) for i in range(clips)]


class AudioTower(Encoder):
    """Log-mel CNN audio encoder (ImageBind's audio tower, scaled down); output ``[B, embed_dim]``, un-normalised
    (the scorer normalises)."""

    modality = "audio"

    def __init__(self, params: AudioTowerParams) -> None:
        super().__init__()
        self.params = p = params
        self.clip_samples = int(round(p.clip_seconds * p.sample_rate))
        self.front = LogMel(sample_rate=p.sample_rate, n_mels=p.n_mels)
        if self.front.num_frames(self.clip_samples) < p.stem_stride * 2 ** (len(p.channels) - 1):
            raise ValueError(f"clip_seconds = {p.clip_seconds} is too short for {len(p.channels)} pooling stages")
        layers: list[nn.Module] = []
        width = 1
        for i, out in enumerate(p.channels):
            stride = p.stem_stride if i == 0 else 1
            layers += [nn.Conv2d(width, out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out), nn.GELU()]
            if i < len(p.channels) - 1:
                layers.append(nn.MaxPool2d(2))
            width = out
        self.net = nn.Sequential(*layers)
        self.dropout = nn.Dropout(p.dropout)
        self.head = nn.Linear(2 * width, p.embed_dim)  # mean and max over time, after the mean over frequency

    @property
    def embed_dim(self) -> int:
        return self.params.embed_dim

    def check_files(self, paths: Sequence[str]) -> list[str]:
        """One ``"<path>: <problem>"`` line per WAV file this tower cannot read (silent, clipped, truncated, not WAV,
        ...; :func:`cl_imagebind.audio_io.read_audio`), all files read before any is embedded (``cl caption``)."""
        return check_audio_files(paths, sample_rate=self.params.sample_rate)[1]

    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:
        """``{"wave": [B, clips, clip samples] float32, "length": [B, clips] int64}`` (samples of sound in each
        clip, the rest zeros)."""
        p = self.params
        wave = torch.zeros(len(items), p.clips, self.clip_samples)
        length = torch.zeros(len(items), p.clips, dtype=torch.long)
        for i, item in enumerate(items):
            samples = torch.from_numpy(np.ascontiguousarray(waveform(item, i, p.sample_rate)))
            for c, start in enumerate(clip_windows(len(samples), self.clip_samples, p.clips)):
                piece = samples[start:start + self.clip_samples]
                wave[i, c, :len(piece)] = piece
                length[i, c] = len(piece)
        return {"wave": wave, "length": length}

    def _augment(self, wave: Tensor, length: Tensor) -> Tensor:
        """Gain, a time shift of the sound within its clip, then white noise at a random SNR: ``[R, S]``."""
        p = self.params
        rows, samples = wave.shape
        dev = wave.device
        gain_db = torch.empty(rows, 1, device=dev).uniform_(*p.gain_db)
        wave = wave * 10 ** (gain_db / 20)
        room = (samples - length).clamp(min=0).to(dev)
        shift = (torch.rand(rows, device=dev) * (room + 1).float()).long()
        index = (torch.arange(samples, device=dev)[None, :] - shift[:, None]) % samples
        wave = wave.gather(1, index)  # the zero padding wraps to the front: a shift, not a cut
        power = wave.square().sum(1, keepdim=True) / length.clamp(min=1).to(dev)[:, None]
        snr_db = torch.empty(rows, 1, device=dev).uniform_(*p.snr_db)
        noise = torch.randn_like(wave) * (power / 10 ** (snr_db / 10)).sqrt()
        return wave + noise

    def _spec_augment(self, spec: Tensor) -> Tensor:
        p = self.params
        rows, mels, frames = spec.shape
        dev = spec.device
        for size, extent, axis in ((p.freq_mask, mels, 1), (p.time_mask, frames, 2)):
            if size <= 0:
                continue
            width = torch.randint(0, size + 1, (rows, 1), device=dev)
            start = (torch.rand(rows, 1, device=dev) * (extent - width + 1).float()).long()
            pos = torch.arange(extent, device=dev)[None, :]
            mask = (pos >= start) & (pos < start + width)
            spec = spec.masked_fill(mask[:, :, None] if axis == 1 else mask[:, None, :], 0.0)
        return spec

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        wave, length = inputs["wave"], inputs["length"]
        batch, clips, samples = wave.shape
        flat, flat_length = wave.reshape(batch * clips, samples).float(), length.reshape(-1)
        augmenting = self.training and self.params.augment
        if augmenting:
            flat = self._augment(flat, flat_length)
        spec = self.front(flat)  # [R, mels, frames]
        if augmenting:
            spec = self._spec_augment(spec)
        x = self.net(spec[:, None])  # [R, C, mels', frames']
        x = x.mean(dim=2)
        pooled = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)
        emb = self.head(self.dropout(pooled))
        return emb.reshape(batch, clips, -1).mean(dim=1)  # ImageBind averages the clips' embeddings


def build_audio_tower(params: AudioTowerParams, ctx=None) -> AudioTower:
    return AudioTower(params)
