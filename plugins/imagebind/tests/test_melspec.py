"""LogMel against librosa (float64 reference), frame counts, shapes, and where a pure tone lands."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cl_imagebind.melspec import LOG_FLOOR, LogMel, hz_to_mel, mel_filterbank

SR = 16000


def _signal(seconds: float = 1.3, sr: int = SR) -> np.ndarray:
    """A chirp from 100 Hz to 6 kHz plus two steady tones and a little seeded noise, float64."""
    t = np.arange(int(seconds * sr)) / sr
    chirp = np.sin(2 * np.pi * (100 * t + (6000 - 100) / (2 * seconds) * t**2))
    tones = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t + 0.7)
    noise = 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return 0.5 * chirp + tones + noise + 0.05  # + a DC offset, removed by both sides


def _librosa_logmel(x: np.ndarray, lm: LogMel) -> np.ndarray:
    librosa = pytest.importorskip("librosa")
    x = x - x.mean()
    pad_l = (lm.n_fft - lm.win_length) // 2
    x = np.pad(x, (pad_l, lm.n_fft - lm.win_length - pad_l))
    window = np.hanning(lm.win_length)  # symmetric Hann, Kaldi's "hanning"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about the empty low filters (expected, see melspec)
        mel = librosa.feature.melspectrogram(
            y=x, sr=lm.sample_rate, n_fft=lm.n_fft, hop_length=lm.hop_length, win_length=lm.win_length,
            window=window, center=False, power=2.0, n_mels=lm.n_mels, fmin=lm.f_min, fmax=lm.f_max, htk=True,
            norm=None, dtype=np.float64)
    return (np.log(np.maximum(mel, LOG_FLOOR)) - lm.mean) / lm.std


@pytest.mark.parametrize("n_mels", [128, 64])
def test_matches_librosa_float64(n_mels):
    x = _signal()
    lm = LogMel(n_mels=n_mels)
    ours = lm(torch.from_numpy(x)[None]).numpy()[0]
    ref = _librosa_logmel(x, lm)
    assert ours.dtype == np.float64
    assert ours.shape == ref.shape == (n_mels, lm.num_frames(x.size))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    # the comparison is not vacuous: the features vary over orders of magnitude of energy
    assert ref.max() - ref.min() > 1.0


def test_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = librosa.filters.mel(sr=SR, n_fft=512, n_mels=40, fmin=20.0, fmax=8000.0, htk=True, norm=None,
                                  dtype=np.float64)
    np.testing.assert_allclose(mel_filterbank(SR, 512, 40, 20.0, 8000.0).numpy(), ref, atol=1e-12)


def test_float32_close_to_float64_and_batched():
    x = np.stack([_signal(), _signal()[::-1].copy()])
    lm = LogMel(n_mels=64)
    f64 = lm(torch.from_numpy(x))
    f32 = lm(torch.from_numpy(x).float())
    assert f32.dtype == torch.float32 and f64.shape == f32.shape == (2, 64, lm.num_frames(x.shape[1]))
    # bins above the log floor agree closely; float32 rounding only matters near the floor
    live = f64 > (np.log(LOG_FLOOR) - lm.mean) / lm.std + 1.0
    assert torch.allclose(f32.double()[live], f64[live], atol=1e-3)
    # each row of the batch is computed independently of the other
    single = lm(torch.from_numpy(x[1:]))
    assert torch.allclose(single[0], f64[1], atol=1e-12)
    # 1-D input gives the unbatched result
    assert torch.allclose(lm(torch.from_numpy(x[0])), f64[0], atol=1e-12)


def test_num_frames_imagebind_sizes():
    lm = LogMel()
    assert (lm.win_length, lm.hop_length, lm.n_fft) == (400, 160, 512)
    assert lm.num_frames(32000) == 198  # ImageBind pads 198 frames of a 2 s clip to 204
    assert lm.num_frames(399) == 0 and lm.num_frames(400) == 1 and lm.num_frames(559) == 1
    assert lm.num_frames(560) == 2
    for samples in (400, 559, 560, 1234, 32000):
        assert lm(torch.zeros(1, samples) + torch.randn(1, samples) * 0.1).shape == (1, 128, lm.num_frames(samples))
    with pytest.raises(ValueError, match="shorter than one window"):
        lm(torch.zeros(2, 399))


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0, 5000.0])
def test_tone_lands_in_its_mel_bin(freq):
    lm = LogMel(n_mels=64)
    t = torch.arange(SR, dtype=torch.float64) / SR
    out = lm(torch.sin(2 * torch.pi * freq * t)[None])[0]
    loudest = out.mean(dim=1).argmax().item()
    # the filter whose peak is nearest to the tone (in mel) must be the loudest
    edges = torch.linspace(hz_to_mel(torch.tensor(20.0)).item(), hz_to_mel(torch.tensor(8000.0)).item(), 66)
    centres = edges[1:-1]
    expected = (centres - hz_to_mel(torch.tensor(freq))).abs().argmin().item()
    assert abs(loudest - expected) <= 1
    # and it stands far above bins away from the tone
    assert out.mean(dim=1)[loudest] - out.mean(dim=1)[(expected + 20) % 64] > 0.5


def test_normalisation_and_silence_floor():
    lm = LogMel(mean=-4.268, std=9.138)
    out = lm(torch.zeros(1, 4000))
    expected = (np.log(LOG_FLOOR) - (-4.268)) / 9.138
    assert torch.allclose(out, torch.full_like(out, expected), atol=1e-5)
    plain = LogMel(mean=0.0, std=1.0)
    x = torch.randn(1, 4000)
    assert torch.allclose((plain(x) + 4.268) / 9.138, lm(x), atol=1e-5)


def test_half_precision_and_module_moves():
    lm = LogMel(n_mels=32).half()  # buffers follow .half(), the computation still runs in float32
    x = torch.randn(2, 3200)
    out = lm(x.half())
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert torch.allclose(out.float(), LogMel(n_mels=32)(x.half().float()), atol=2e-2)
    assert "window" not in lm.state_dict() and "filters" not in lm.state_dict()


def test_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_fft"):
        LogMel(n_fft=256)
    with pytest.raises(ValueError, match="Nyquist"):
        LogMel(f_max=9000.0)
    with pytest.raises(ValueError, match="float waveform"):
        LogMel()(torch.zeros(1, 2, 800))
