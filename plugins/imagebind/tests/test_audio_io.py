"""read_audio / check_audio_files: every kind of bad file is named with its problem; good files decode exactly."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest

from cl_core.api import DataError
from cl_imagebind.audio_io import SAMPLE_RATE, check_audio_files, read_audio, read_audio_files, resample


def _tone(freq: float = 440.0, seconds: float = 0.5, rate: int = SAMPLE_RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def _write(path: Path, x: np.ndarray, rate: int = SAMPLE_RATE, width: int = 2) -> Path:
    """Write float samples ``[S]`` or ``[S, C]`` in [-1, 1] as integer PCM with the standard ``wave`` module."""
    x = x.reshape(len(x), -1) if x.ndim == 2 else x[:, None]
    if width == 1:
        codes = np.clip(np.round(x * 128 + 128), 0, 255).astype(np.uint8)
        raw = codes.tobytes()
    elif width == 3:
        codes = np.clip(np.round(x * 2**23), -2**23, 2**23 - 1).astype("<i4")
        raw = codes.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        dtype = {2: "<i2", 4: "<i4"}[width]
        top = 2 ** (8 * width - 1)
        raw = np.clip(np.round(x * top), -top, top - 1).astype(dtype).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def _float_wav(path: Path, x: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """A mono IEEE-float (format 3) WAV, which the ``wave`` module cannot write or read."""
    data = x.astype("<f4").tobytes()
    fmt = ((3).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little")
           + (rate * 4).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little"))
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    return path


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_pcm_widths_decode_to_the_written_signal(tmp_path, width):
    x = _tone(seconds=0.25)
    got = read_audio(_write(tmp_path / f"w{width}.wav", x, width=width))
    assert got.dtype == np.float32 and got.shape == x.shape
    step = 2.0 ** -(8 * width - 1)  # one quantisation step of this width
    np.testing.assert_allclose(got, x, atol=step)


def test_float_wav_is_read(tmp_path):
    x = _tone(seconds=0.2)
    np.testing.assert_allclose(read_audio(_float_wav(tmp_path / "f.wav", x)), x, atol=1e-7)


def test_stereo_is_averaged_or_refused(tmp_path):
    left, right = _tone(440.0), _tone(1000.0, amp=0.25)
    path = _write(tmp_path / "stereo.wav", np.stack([left, right], axis=1))
    np.testing.assert_allclose(read_audio(path), (left + right) / 2, atol=2 / 32768)
    with pytest.raises(DataError, match=r"stereo\.wav: 2 channels, expected mono \(strict\)"):
        read_audio(path, strict=True)


def test_wrong_rate_is_resampled_or_refused(tmp_path):
    path = _write(tmp_path / "cd.wav", _tone(440.0, seconds=1.0, rate=22050), rate=22050)
    got = read_audio(path)
    assert abs(len(got) - SAMPLE_RATE) <= 2  # 1 s at 16 kHz
    assert abs(_peak_hz(got, SAMPLE_RATE) - 440.0) <= 1.0
    with pytest.raises(DataError, match=r"cd\.wav: sample rate 22050 Hz, expected 16000 Hz \(strict\)"):
        read_audio(path, strict=True)


def test_resample_keeps_the_frequency():
    x = _tone(440.0, seconds=1.0, rate=22050).astype(np.float32)
    y = resample(x, 22050, 16000)
    assert y.dtype == np.float32 and abs(len(y) - 16000) <= 2
    assert abs(_peak_hz(y, 16000) - 440.0) <= 1.0
    # a tone placed off the FFT grid at 16 kHz, so a wrong ratio would move it by tens of Hz
    z = resample(_tone(3003.0, seconds=1.0, rate=44100).astype(np.float32), 44100, 16000)
    assert abs(_peak_hz(z, 16000) - 3003.0) <= 1.0
    assert resample(x, 16000, 16000) is x


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, regex the message must match after the path)."""
    rng = np.random.default_rng(0)
    silent = _write(tmp / "silent.wav", np.zeros(8000))
    quiet = _write(tmp / "quiet.wav", _tone(amp=2e-5))  # rounds to +-1 int16 code (3.1e-5): not zero, still silent
    loud = np.clip(_tone(amp=2.0), -1, 1)  # a sine driven 6 dB over full scale: |sin| >= 1/2 for 2/3 of the time
    clipped = _write(tmp / "clipped.wav", loud)
    empty = _write(tmp / "empty.wav", np.zeros(0))
    good = _write(tmp / "cut.wav", _tone(seconds=1.0))
    truncated = tmp / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:5000])
    header_only = tmp / "header_only.wav"
    header_only.write_bytes(good.read_bytes()[:36])
    mp3 = tmp / "song.mp3"
    mp3.write_text("this is not really audio\n")
    id3 = tmp / "tagged.mp3"
    id3.write_bytes(b"ID3\x04\x00" + rng.bytes(300))
    noise = tmp / "noise.wav"
    noise.write_bytes(rng.bytes(2000))
    zero = tmp / "zero.wav"
    zero.write_bytes(b"")
    return {
        "silent": (silent, r"silent \(peak amplitude 0\.0e\+00"),
        "quiet": (quiet, r"silent \(peak amplitude 3\.1e-05"),
        "clipped": (clipped, r"clipped \(6[5-8]\.[0-9] % of samples at full scale"),
        "empty": (empty, r"empty WAV file \(no audio frames\)"),
        "truncated": (truncated, r"truncated WAV file: the header promises 16000 frames \(1\.00 s\) but the file "
                                 r"holds only 2478"),
        "header_only": (header_only, r"truncated WAV file \(no 'data' chunk"),
        "mp3": (mp3, r"not a WAV file \(no RIFF/WAVE header\); only WAV audio is read, convert it first, e\.g\. "
                     r"`ffmpeg -i in\.mp3 -ar 16000 -ac 1 out\.wav`"),
        "id3": (id3, r"a MP3 file; only WAV audio is read"),
        "noise": (noise, r"not a WAV file"),
        "zero": (zero, r"empty file \(0 bytes\)"),
        "missing": (tmp / "nowhere.wav", r"file not found"),
        "folder": (tmp, r"not a file"),
    }


@pytest.mark.parametrize("kind", ["silent", "quiet", "clipped", "empty", "truncated", "header_only", "mp3", "id3",
                                  "noise", "zero", "missing", "folder"])
def test_each_bad_file_is_named_with_its_problem(tmp_path, kind):
    path, problem = _bad_files(tmp_path)[kind]
    with pytest.raises(DataError) as info:
        read_audio(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert re.search(problem, message), message


def test_a_little_clipping_is_tolerated(tmp_path):
    x = _tone(seconds=1.0, amp=0.5)
    x[:100] = 1.0  # 0.6 % of the samples at full scale: below the 1 % limit
    assert read_audio(_write(tmp_path / "ok.wav", x)).max() == pytest.approx(1.0, abs=1e-4)
    x[:200] = 1.0  # 1.25 %
    with pytest.raises(DataError, match=r"clipped \(1\.2 %"):
        read_audio(_write(tmp_path / "over.wav", x))


def test_unsupported_encoding_is_named(tmp_path):
    path = _float_wav(tmp_path / "odd.wav", _tone(seconds=0.1))
    data = bytearray(path.read_bytes())
    data[20:22] = (0x0055).to_bytes(2, "little")  # format code of MP3-in-WAV
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"odd\.wav: unsupported WAV encoding \(format code 0x0055"):
        read_audio(path)


def test_check_lists_every_bad_file_and_keeps_the_good(tmp_path):
    bad = _bad_files(tmp_path)
    good = [_write(tmp_path / f"good{i}.wav", _tone(220.0 * (i + 1))) for i in range(3)]
    paths = [good[0], *[p for p, _ in bad.values()], good[1], good[2]]
    waves, problems = check_audio_files(paths, workers=2)
    assert [w is None for w in waves] == [False, *[True] * len(bad), False, False]
    assert len(problems) == len(bad)
    for (path, problem), line in zip(bad.values(), problems):
        assert line.startswith(f"{path}: ")
    np.testing.assert_allclose(waves[-1], _tone(660.0), atol=1 / 32768)

    with pytest.raises(DataError) as info:
        read_audio_files(paths, source="pairs.tsv")
    message = str(info.value)
    assert message.startswith(f"pairs.tsv: {len(bad)} of {len(paths)} audio file(s) missing or unusable:\n")
    assert all(f"  {p}: " in message for p, _ in bad.values())
    assert str(good[0]) not in message
    assert len(read_audio_files(good)) == 3


def test_many_bad_files_show_the_first_20_and_a_count(tmp_path):
    paths = [tmp_path / f"missing{i:02d}.wav" for i in range(25)]
    with pytest.raises(DataError) as info:
        read_audio_files(paths)
    message = str(info.value)
    assert "missing19.wav: file not found" in message and "missing20.wav" not in message
    assert message.endswith("... and 5 more")
