"""``imagebind.audio``: the encoder contract, clip averaging, items it takes, augmentation only in training."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch

from cl_core.api import DataError
from cl_core.testing import EncoderContract
from cl_imagebind.audio_tower import AudioTower, clip_windows
from cl_imagebind.audio_tower_params import AudioTowerParams

SMALL = dict(n_mels=16, clip_seconds=0.5, channels=(4, 8), embed_dim=12)


def tone(hz: float, seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16)


class TestAudioTower(EncoderContract):
    name = "imagebind.audio"

    @pytest.fixture
    def params(self):
        return AudioTowerParams(**SMALL)

    @pytest.fixture
    def items(self):
        return [tone(440, 0.3), tone(880, 0.9).astype(np.float32) / 32768, tone(220, 0.5)]


def test_clips_are_averaged_after_the_head():
    torch.manual_seed(0)
    two = AudioTower(AudioTowerParams(**SMALL, clips=2)).eval()
    one = AudioTower(AudioTowerParams(**SMALL, clips=1)).eval()
    one.load_state_dict(two.state_dict())
    long = tone(300, 1.5)
    starts = clip_windows(len(long), two.clip_samples, 2)
    assert starts == [0, len(long) - two.clip_samples], "the two windows cover the start and the end"
    pieces = [long[s:s + two.clip_samples] for s in starts]
    expected = one.embed(pieces).mean(0)
    torch.testing.assert_close(two.embed([long])[0], expected, rtol=1e-5, atol=1e-6)


def test_a_short_file_is_padded_and_a_long_one_centred():
    t = AudioTower(AudioTowerParams(**SMALL))
    prepared = t.prepare([tone(440, 0.2), tone(440, 2.0)])
    assert prepared["wave"].shape == (2, 1, t.clip_samples)
    assert prepared["length"].tolist() == [[3200], [t.clip_samples]]
    assert not prepared["wave"][0, 0, 3200:].any(), "the rest of a short clip is zeros"
    assert clip_windows(32000, 8000, 1) == [12000]


def test_augmentation_runs_in_training_only():
    torch.manual_seed(0)
    t = AudioTower(AudioTowerParams(**SMALL, dropout=0.0))
    inputs = t.prepare([tone(440, 0.4), tone(660, 0.4)])
    t.net.eval()  # BatchNorm in eval mode in both passes: only augmentation can make them differ
    t.training = True
    a, b = t.encode(inputs), t.encode(inputs)
    assert not torch.allclose(a, b), "training passes see different augmentations"
    t.training = False
    torch.testing.assert_close(t.encode(inputs), t.encode(inputs))
    t2 = AudioTower(AudioTowerParams(**SMALL, dropout=0.0, augment=False))
    t2.load_state_dict(t.state_dict())
    t2.net.eval()
    t2.training = True
    torch.testing.assert_close(t2.encode(inputs), t2.encode(inputs))


def test_wav_paths_and_bad_items(tmp_path):
    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(tone(440, 0.3).tobytes())
    t = AudioTower(AudioTowerParams(**SMALL))
    from_file = t.prepare([str(path)])["wave"]
    from_array = t.prepare([tone(440, 0.3)])["wave"]
    torch.testing.assert_close(from_file, from_array, atol=1e-4, rtol=0)
    with pytest.raises(DataError, match="audio item 1: a waveform must be a non-empty 1-D array"):
        t.prepare([tone(440, 0.3), np.zeros((2, 100), np.int16)])
    with pytest.raises(DataError, match="audio item 0: expected a waveform array or a WAV path, got int"):
        t.prepare([3])


@pytest.mark.parametrize("bad", [{"clip_seconds": -1.0}, {"gain_db": (6.0, -6.0)}, {"channels": ()},
                                 {"clip_seconds": 0.2, "channels": (4, 8, 16, 32, 64)}])
def test_bad_params_are_errors(bad):
    with pytest.raises(ValueError):
        AudioTower(AudioTowerParams(**{**SMALL, **bad}))


def test_check_files_lists_every_bad_file_before_any_is_embedded(tmp_path):
    """What ``cl caption --modality audio`` asks the tower first (cl_core.captioning.check_items)."""
    good, silent, text = tmp_path / "good.wav", tmp_path / "silent.wav", tmp_path / "notes.wav"
    for path, samples in ((good, tone(440, 0.3)), (silent, np.zeros(4800, np.int16))):
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(samples.tobytes())
    text.write_text("not audio")
    problems = AudioTower(AudioTowerParams(**SMALL)).check_files([str(good), str(silent), str(text)])
    assert len(problems) == 2
    assert problems[0].startswith(f"{silent}: silent") and problems[1].startswith(f"{text}: ")
