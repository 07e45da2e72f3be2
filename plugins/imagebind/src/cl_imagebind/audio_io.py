"""Reading the user's audio: WAV files checked, mixed to mono and resampled to 16 kHz (ImageBind's input rate).

ImageBind (Girdhar et al., 2023) feeds its audio tower 16 kHz mono waveforms. :func:`read_audio` reads one WAV
file into float32 samples in [-1, 1]; :func:`read_audio_files` / :func:`check_audio_files` read many in a
thread pool and report *every* bad file at once (the first 20 and a count), like ``datasets.image-caption``
does for images, so a user fixes a folder in one pass.

Only RIFF/WAVE is read (a small chunk parser, so it accepts integer PCM of 8/16/24/32 bits, IEEE float of
32/64 bits and the WAVE_FORMAT_EXTENSIBLE header that tools write for those; the standard library's ``wave``
module reads only the first). Anything else (MP3, FLAC, Ogg, other bytes) is a :class:`~cl_core.errors.DataError`
that says how to convert it, e.g. ``ffmpeg -i in.mp3 -ar 16000 -ac 1 out.wav``.

A file is rejected (DataError naming the path and the problem) when it is: missing, not a WAV file, in an
unsupported WAV encoding, truncated (its header promises more audio than the file holds) or malformed, empty
(no frames), silent (peak below :data:`SILENCE_PEAK`) or clipped (more than :data:`CLIP_FRACTION` of its
samples at full scale). Another sample rate is resampled with libsoxr (``soxr``, "HQ"), more than one channel
is averaged to mono; with ``strict=True`` both are errors instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cl_core.api import DataError, indented_list

#: ImageBind's audio sample rate, Hz.
SAMPLE_RATE = 16000
#: A file whose largest |sample| is below this (full scale = 1) is "silent".
SILENCE_PEAK = 1e-4
#: A file with more than this fraction of its samples at full scale is "clipped".
CLIP_FRACTION = 0.01

_CONVERT = "ffmpeg -i in.mp3 -ar 16000 -ac 1 out.wav"
_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE

#: leading bytes of common non-WAV files -> what they are (for the error message)
_MAGIC = [(b"ID3", "MP3"), (b"\xff\xfb", "MP3"), (b"\xff\xf3", "MP3"), (b"\xff\xf2", "MP3"), (b"fLaC", "FLAC"),
          (b"OggS", "Ogg"), (b"\x1aE\xdf\xa3", "WebM/Matroska"), (b"FORM", "AIFF"), (b"RIFX", "big-endian RIFF"),
          (b"RF64", "RF64 (64-bit WAV)"), (b"#!AMR", "AMR")]


def _fail(path: str | os.PathLike, problem: str) -> DataError:
    return DataError(f"{path}: {problem}")


def _not_wav(path: str | os.PathLike, head: bytes) -> DataError:
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if kind is None and head[4:8] == b"ftyp":
        kind = "MP4/M4A"
    what = f"a {kind} file" if kind else "not a WAV file (no RIFF/WAVE header)"
    return _fail(path, f"{what}; only WAV audio is read, convert it first, e.g. `{_CONVERT}`")


def _parse_wav(path: str | os.PathLike, data: bytes) -> tuple[np.ndarray, int, np.ndarray]:
    """WAV bytes -> ``(samples, rate, full)``: float32 ``[frames, channels]`` scaled to [-1, 1] (float WAV may
    exceed it), the rate in Hz, and a bool mask of the samples at full scale (integer PCM: the two extreme
    codes; float: |x| >= 1)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise _not_wav(path, data[:12])
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body_start = pos + 8
        if chunk == b"fmt ":
            if size < 16 or body_start + size > len(data):
                raise _fail(path, "malformed WAV header (short 'fmt ' chunk); the file is damaged or truncated")
            tag, channels, rate = (int.from_bytes(data[body_start + a:body_start + b], "little")
                                   for a, b in ((0, 2), (2, 4), (4, 8)))
            block, bits = (int.from_bytes(data[body_start + a:body_start + b], "little") for a, b in ((12, 14),
                                                                                                       (14, 16)))
            if tag == _EXTENSIBLE and size >= 40:  # the real format is the first 2 bytes of the SubFormat GUID
                tag = int.from_bytes(data[body_start + 24:body_start + 26], "little")
            fmt = (tag, channels, rate, block, bits)
        elif chunk == b"data":
            if fmt is None:
                raise _fail(path, "malformed WAV file (audio data before the 'fmt ' header)")
            return _decode(path, fmt, data, body_start, size)
        pos = body_start + size + (size & 1)  # chunks are word-aligned
    if fmt is None:
        raise _fail(path, "malformed or truncated WAV file (no 'fmt ' header)")
    raise _fail(path, "truncated WAV file (no 'data' chunk: the header ends before any audio)")


def _decode(path, fmt, data: bytes, start: int, size: int) -> tuple[np.ndarray, int, np.ndarray]:
    tag, channels, rate, block, bits = fmt
    if channels < 1 or rate < 1:
        raise _fail(path, f"malformed WAV header ({channels} channels at {rate} Hz)")
    width = bits // 8 if bits % 8 == 0 else 0
    ok = (tag == _PCM and width in (1, 2, 3, 4)) or (tag == _FLOAT and width in (4, 8))
    if not ok or block != width * channels:
        kind = {_PCM: "integer PCM", _FLOAT: "float"}.get(tag, f"format code {tag:#06x}")
        raise _fail(path, f"unsupported WAV encoding ({kind}, {bits} bits); only PCM 8/16/24/32-bit integer or "
                          f"32/64-bit float WAV is read, convert it e.g. with "
                          f"`ffmpeg -i in.wav -c:a pcm_s16le -ar 16000 -ac 1 out.wav`")
    if size == 0xFFFFFFFF:  # streaming writers that did not know the length: the data runs to the end
        size = len(data) - start
    declared = size // block
    held = (len(data) - start) // block
    if held < declared:
        raise _fail(path, f"truncated WAV file: the header promises {declared} frames "
                          f"({declared / rate:.2f} s) but the file holds only {held} "
                          f"({held / rate:.2f} s); re-export or re-download it")
    if declared == 0:
        raise _fail(path, "empty WAV file (no audio frames)")
    raw = np.frombuffer(data, dtype=np.uint8, count=declared * block, offset=start)
    if tag == _FLOAT:
        x = raw.view("<f4" if width == 4 else "<f8").astype(np.float32)
        full = np.abs(x) >= 1.0
    elif width == 1:  # 8-bit WAV is unsigned, centred on 128
        codes = raw.astype(np.int16) - 128
        x, full = codes.astype(np.float32) / 128.0, (codes == -128) | (codes == 127)
    elif width == 3:  # 24-bit: place the 3 bytes in the top of an int32 so the sign comes along
        quad = np.zeros((declared * channels, 4), dtype=np.uint8)
        quad[:, 1:] = raw.reshape(-1, 3)
        codes = quad.view("<i4").ravel() >> 8
        x = codes.astype(np.float32) / float(1 << 23)
        full = (codes == -(1 << 23)) | (codes == (1 << 23) - 1)
    else:
        codes = raw.view("<i2" if width == 2 else "<i4")
        info = np.iinfo(codes.dtype)
        x = (codes.astype(np.float64) / -float(info.min)).astype(np.float32)
        full = (codes == info.min) | (codes == info.max)
    return x.reshape(declared, channels), rate, full.reshape(declared, channels)


def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample ``wave`` (``[S]`` or ``[S, channels]``) from ``from_rate`` to ``to_rate`` Hz with libsoxr ("HQ").

    The dtype is kept for float32/float64/int16/int32 (soxr's types); other inputs are converted to float32.
    Returns ``wave`` itself when the rates are equal.
    """
    if from_rate == to_rate:
        return wave
    import soxr

    if wave.dtype not in (np.float32, np.float64, np.int16, np.int32):
        wave = wave.astype(np.float32)
    return soxr.resample(wave, from_rate, to_rate, quality="HQ")


def read_audio(path: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE, strict: bool = False) -> np.ndarray:
    """One WAV file -> float32 mono samples in [-1, 1], shape ``[S]``, at ``sample_rate`` Hz.

    Args:
        path: a RIFF/WAVE file (integer PCM 8/16/24/32-bit or float 32/64-bit).
        sample_rate: the rate returned; another file rate is resampled with soxr (an error if ``strict``).
        strict: refuse (rather than fix) another sample rate or more than one channel.

    Raises:
        DataError: ``"<path>: <problem>"``: missing, unreadable, not WAV (MP3, FLAC, ...; with the ffmpeg
            command to convert it), unsupported WAV encoding, malformed, truncated, empty, silent (peak
            below 1e-4), clipped (over 1 % of samples at full scale), and with ``strict`` a wrong sample rate
            or several channels.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise _fail(path, "file not found") from None
    except IsADirectoryError:
        raise _fail(path, "not a file (a folder)") from None
    except OSError as exc:
        raise _fail(path, f"unreadable ({exc.strerror or exc})") from None
    if not data:
        raise _fail(path, "empty file (0 bytes)")
    x, rate, full = _parse_wav(path, data)
    frames, channels = x.shape
    if strict and channels != 1:
        raise _fail(path, f"{channels} channels, expected mono (strict); mix it down, e.g. "
                          f"`ffmpeg -i in.wav -ac 1 out.wav`")
    if strict and rate != sample_rate:
        raise _fail(path, f"sample rate {rate} Hz, expected {sample_rate} Hz (strict); resample it, e.g. "
                          f"`ffmpeg -i in.wav -ar {sample_rate} out.wav`")
    peak = float(np.abs(x).max())
    if peak < SILENCE_PEAK:
        raise _fail(path, f"silent (peak amplitude {peak:.1e}, below {SILENCE_PEAK:.0e} of full scale)")
    clipped = float(full.mean())
    if clipped > CLIP_FRACTION:
        raise _fail(path, f"clipped ({100 * clipped:.1f} % of samples at full scale, more than "
                          f"{100 * CLIP_FRACTION:.0f} %); record or export it at a lower level")
    mono = x[:, 0] if channels == 1 else x.mean(axis=1, dtype=np.float32)
    mono = resample(mono, rate, sample_rate)
    # float WAV may exceed full scale, and resampling can overshoot slightly: keep the promised range
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)


def _read_or_problem(path: str | os.PathLike, sample_rate: int, strict: bool) -> np.ndarray | str:
    try:
        return read_audio(path, sample_rate=sample_rate, strict=strict)
    except DataError as exc:
        return str(exc)
    except Exception as exc:  # any other failure still means "this file is bad" to the user
        return f"{path}: unreadable ({type(exc).__name__}: {exc})"


def check_audio_files(paths: Sequence[str | os.PathLike], *, sample_rate: int = SAMPLE_RATE, strict: bool = False,
                      workers: int | None = None) -> tuple[list[np.ndarray | None], list[str]]:
    """Read many WAV files (thread pool) without stopping at the first bad one.

    Returns:
        ``(waves, problems)``: ``waves[i]`` is :func:`read_audio` of ``paths[i]`` (float32 ``[S]``) or None if
        that file is bad; ``problems`` holds one ``"<path>: <problem>"`` line per bad file, in ``paths`` order.
    """
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda p: _read_or_problem(p, sample_rate, strict), paths))
    waves = [None if isinstance(r, str) else r for r in results]
    return waves, [r for r in results if isinstance(r, str)]


def read_audio_files(paths: Sequence[str | os.PathLike], *, sample_rate: int = SAMPLE_RATE, strict: bool = False,
                     workers: int | None = None, source: str | os.PathLike | None = None) -> list[np.ndarray]:
    """:func:`check_audio_files`, raising one DataError that lists every bad file (first 20 and a count).

    ``source`` (e.g. the captions table that names the files) prefixes the message.

    Raises:
        DataError: ``"<source>: N bad audio file(s):\\n  <path>: <problem>\\n  ..."``.
    """
    waves, problems = check_audio_files(paths, sample_rate=sample_rate, strict=strict, workers=workers)
    if problems:
        where = f"{source}: " if source is not None else ""
        raise DataError(f"{where}{len(problems)} of {len(waves)} audio file(s) missing or unusable:\n"
                        + indented_list(problems))
    return waves  # type: ignore[return-value]
