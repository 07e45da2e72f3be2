"""Params of the ``imagebind.audio`` encoder (frozen attrs, torch-free)."""

from __future__ import annotations

from attrs import field, frozen, validators


def _range(instance, attribute, value) -> None:
    low, high = value
    if low > high:
        raise ValueError(f"{attribute.name} must be [low, high] with low <= high, got {list(value)}")


@frozen(kw_only=True)
class AudioTowerParams:
    """``imagebind.audio``: a log-mel front end and a small CNN, trained from scratch, as ImageBind's audio tower
    (Girdhar et al., 2023) is, sized for 2 CPU cores.

    A waveform is cut into ``clips`` windows of ``clip_seconds`` (evenly spaced over a longer file; a shorter one
    is zero-padded), each turned into a normalised log-mel spectrogram (:class:`~cl_imagebind.melspec.LogMel`:
    25 ms windows, 10 ms hop) and embedded; the embeddings of a file's clips are averaged after the head, as
    ImageBind does (not re-normalised). In training mode only, the waveform is augmented on the device: random gain,
    additive noise at a random SNR, a random time shift within the clip, and SpecAugment's frequency and time masks
    (Park et al., 2019).

    Attributes:
        sample_rate: Hz of the waveforms (items given as arrays must be at this rate; files are resampled).
        n_mels: mel bins.
        clip_seconds: length of one clip (> 0).
        clips: clips per file (ImageBind: 3).
        channels: output channels of the convolution stages (each stage: 3x3 conv, BatchNorm, GELU, then 2x2
            max-pool except after the last).
        stem_stride: stride of the first convolution (2 quarters the cost of every later stage).
        embed_dim: width N of the embeddings.
        dropout: before the head.
        augment: apply the training augmentation (training mode only).
        gain_db: random gain range in dB.
        snr_db: additive white noise at an SNR drawn from this range, in dB.
        freq_mask: widest SpecAugment frequency mask in mel bins (0: none).
        time_mask: widest SpecAugment time mask in frames (0: none).
    """

    sample_rate: int = field(default=16000, validator=validators.ge(1000))
    n_mels: int = field(default=64, validator=validators.ge(8))
    clip_seconds: float = field(default=2.0, validator=validators.gt(0.1))
    clips: int = field(default=1, validator=validators.ge(1))
    channels: tuple[int, ...] = field(default=(32, 64, 128, 192),
                                      validator=[validators.min_len(1), validators.deep_iterable(validators.ge(1))])
    stem_stride: int = field(default=2, validator=validators.ge(1))
    embed_dim: int = field(default=384, validator=validators.ge(1))
    dropout: float = field(default=0.1, validator=[validators.ge(0), validators.lt(1)])
    augment: bool = True
    gain_db: tuple[float, float] = field(default=(-6.0, 6.0), validator=_range)
    snr_db: tuple[float, float] = field(default=(15.0, 40.0), validator=_range)
    freq_mask: int = field(default=8, validator=validators.ge(0))
    time_mask: int = field(default=20, validator=validators.ge(0))
