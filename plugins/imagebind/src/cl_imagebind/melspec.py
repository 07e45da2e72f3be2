"""Log-mel front end of the audio tower: ImageBind's Kaldi-style filterbank features, batched, in torch.

ImageBind (Girdhar et al., 2023, "ImageBind: One Embedding Space To Bind Them All", ``data.py``) turns 16 kHz
mono audio into 128 log-mel filterbank energies with ``torchaudio.compliance.kaldi.fbank`` (25 ms Hann window,
10 ms hop, power spectrum, HTK mel scale from 20 Hz to Nyquist, natural log) and normalises them with the
AudioSet statistics mean -4.268, std 9.138. :class:`LogMel` computes the same kind of features with
``torch.stft`` on a whole batch at once (any device, float32 or float64), without torchaudio.

Conventions (and where they differ from Kaldi's ``fbank``):

- Framing follows Kaldi's ``snip_edges = true``: frame ``t`` covers samples ``[t * hop, t * hop + win)``, no
  centring, so ``frames = 1 + (samples - win) // hop`` (198 frames for a 2 s clip at 16 kHz; ImageBind pads
  those to 204). The window is Kaldi's ``hanning`` (symmetric Hann, ``0.5 - 0.5 cos(2 pi n / (win - 1))``)
  zero-padded to ``n_fft`` (next power of two, 512 for 400 samples), as Kaldi's ``round_to_power_of_two``.
- Like ImageBind's ``data.py`` the mean of each waveform is removed first; Kaldi's per-frame DC removal and
  0.97 pre-emphasis are not applied (we train our tower from scratch, so the exact statistics do not matter,
  and the features stay checkable against librosa).
- Mel filterbank: HTK mel scale ``mel = 2595 log10(1 + f / 700)``, ``n_mels`` triangles with edges evenly
  spaced in mel between ``f_min`` and ``f_max``, each triangle linear in Hz with peak 1 and no area
  normalisation. This is ``librosa.filters.mel(htk=True, norm=None)``; Kaldi draws its triangles linear in
  mel instead, a small difference in the filter shapes only. With 128 mels and a 512-point FFT at 16 kHz the
  lowest filters are narrower than one FFT bin and catch no bin ("empty"); their energy is the log floor,
  exactly as in Kaldi's own 128-bin features.
- ``log(max(mel power, eps))`` with Kaldi's floor ``eps = 1.1920928955078125e-07`` (float32 epsilon).
"""

from __future__ import annotations

import torch

#: Kaldi's log floor (``std::numeric_limits<float>::epsilon()``).
LOG_FLOOR = 1.1920928955078125e-07


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """HTK mel scale: ``2595 log10(1 + hz / 700)`` (elementwise)."""
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular HTK-mel filters, float64 ``[n_mels, n_fft // 2 + 1]`` (see the module docstring).

    Filter ``m`` rises linearly (in Hz) from edge ``m`` to a peak of 1 at edge ``m + 1`` and falls back to 0
    at edge ``m + 2``, the ``n_mels + 2`` edges evenly spaced in mel over ``[f_min, f_max]``.
    """
    fft_hz = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(hz_to_mel(torch.tensor(f_min, dtype=torch.float64)).item(),
                                     hz_to_mel(torch.tensor(f_max, dtype=torch.float64)).item(),
                                     n_mels + 2, dtype=torch.float64))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz[None, :] - lower) / (centre - lower)
    falling = (upper - fft_hz[None, :]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


class LogMel(torch.nn.Module):
    """Normalised log-mel filterbank energies of a batch of waveforms (ImageBind's audio input).

    Args:
        sample_rate: of the input waveforms, Hz.
        n_mels: number of mel bins (ImageBind: 128).
        win_ms: analysis window, milliseconds (25 ms = 400 samples at 16 kHz).
        hop_ms: frame shift, milliseconds (10 ms = 160 samples at 16 kHz).
        n_fft: FFT size; default the next power of two >= the window (512 at 16 kHz).
        f_min: lowest mel edge, Hz (Kaldi's ``low_freq`` default 20 Hz).
        f_max: highest mel edge, Hz; default Nyquist (``sample_rate / 2``).
        mean, std: the output is ``(log(mel power) - mean) / std``; the defaults are ImageBind's AudioSet
            statistics (mean -4.268, std 9.138).

    Raises:
        ValueError: sizes that make no sense (window longer than ``n_fft``, ``f_max`` above Nyquist, ...).

    The filterbank and window are non-persistent float64 buffers (derived from the arguments, so they are
    not saved in checkpoints); they are cast to the input's dtype on use. They follow module casts like any
    buffer: after ``.half()`` the computation still runs in float32, with filters rounded to float16 (a
    ~1e-3 relative error in the mel energies, ~1e-4 after the log and normalisation).
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 128, win_ms: float = 25.0, hop_ms: float = 10.0,
                 n_fft: int | None = None, f_min: float = 20.0, f_max: float | None = None,
                 mean: float = -4.268, std: float = 9.138) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.n_mels = int(n_mels)
        self.win_length = int(round(sample_rate * win_ms / 1000.0))
        self.hop_length = int(round(sample_rate * hop_ms / 1000.0))
        self.n_fft = int(n_fft) if n_fft is not None else 1 << max(0, (self.win_length - 1).bit_length())
        self.f_min = float(f_min)
        self.f_max = float(f_max) if f_max is not None else sample_rate / 2.0
        self.mean = float(mean)
        self.std = float(std)
        if self.win_length < 2 or self.hop_length < 1:
            raise ValueError(f"LogMel: window {win_ms} ms / hop {hop_ms} ms is under 2 / 1 samples at "
                             f"{sample_rate} Hz")
        if self.n_fft < self.win_length:
            raise ValueError(f"LogMel: n_fft = {self.n_fft} is shorter than the window ({self.win_length} samples)")
        if not 0.0 <= self.f_min < self.f_max <= sample_rate / 2.0:
            raise ValueError(f"LogMel: need 0 <= f_min < f_max <= Nyquist ({sample_rate / 2} Hz), "
                             f"got f_min = {self.f_min}, f_max = {self.f_max}")
        if self.n_mels < 1 or not self.std > 0:
            raise ValueError(f"LogMel: need n_mels >= 1 and std > 0, got {self.n_mels} and {self.std}")
        # Kaldi's "hanning" window is the symmetric Hann (periodic=False).
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=False, dtype=torch.float64),
                             persistent=False)
        self.register_buffer("filters", mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.f_min,
                                                       self.f_max), persistent=False)

    def num_frames(self, samples: int) -> int:
        """Frames produced for a waveform of ``samples`` samples: ``1 + (samples - win) // hop`` (0 if shorter
        than one window)."""
        return 0 if samples < self.win_length else 1 + (samples - self.win_length) // self.hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave`` float ``[B, S]`` (or ``[S]``), in [-1, 1] -> ``[B, n_mels, frames]`` (``[n_mels, frames]``).

        float16 / bfloat16 inputs are computed in float32 and returned in their dtype.

        Raises:
            ValueError: not 1-D/2-D, not floating point, or shorter than one window.
        """
        if wave.dim() not in (1, 2) or not wave.is_floating_point():
            raise ValueError(f"LogMel: expected a float waveform [B, samples] or [samples], got {wave.dtype} "
                             f"{tuple(wave.shape)}")
        squeeze = wave.dim() == 1
        x = wave[None] if squeeze else wave
        if x.shape[-1] < self.win_length:
            raise ValueError(f"LogMel: waveform of {x.shape[-1]} samples is shorter than one window "
                             f"({self.win_length} samples)")
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        x = x.to(dtype)
        x = x - x.mean(dim=-1, keepdim=True)
        # torch.stft centres the window inside each n_fft frame; padding (n_fft - win) / 2 on both sides makes
        # frame t start its window exactly at sample t * hop (Kaldi's snip_edges framing, no centring).
        left = (self.n_fft - self.win_length) // 2
        right = self.n_fft - self.win_length - left
        x = torch.nn.functional.pad(x, (left, right))
        spec = torch.stft(x, n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window.to(device=x.device, dtype=dtype), center=False, return_complex=True)
        power = spec.real.square() + spec.imag.square()                      # [B, n_fft // 2 + 1, frames]
        mel = torch.matmul(self.filters.to(device=x.device, dtype=dtype), power)  # [B, n_mels, frames]
        out = (torch.log(torch.clamp(mel, min=LOG_FLOOR)) - self.mean) / self.std
        out = out.to(wave.dtype)
        return out[0] if squeeze else out

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_mels={self.n_mels}, win={self.win_length}, "
                f"hop={self.hop_length}, n_fft={self.n_fft}, f_min={self.f_min}, f_max={self.f_max}, "
                f"mean={self.mean}, std={self.std}")

