"""Spoken names from espeak-ng: many voices, fast, cached on disk.

The speech modality of our ImageBind (Girdhar et al., 2023) experiments is class names spoken by a formant
synthesiser. :func:`speak` turns ``texts x voices`` into 16 kHz int16 mono clips; :func:`voice_pool` draws a
seeded, varied set of distinct :class:`Voice` s (English accents x voice variants x speeds x pitches).

How it is fast (measured on the 2-core build machine, espeak-ng 1.51):

- ``espeak-ng -w`` per clip costs ~11 ms of process start alone. Instead each voice runs in one worker
  process that calls ``libespeak-ng.so.1`` through ctypes (``espeak_Initialize`` with
  ``AUDIO_OUTPUT_SYNCHRONOUS``, a synth callback collecting the samples, ``espeak_SetVoiceByName``,
  ``espeak_SetParameter`` for rate and pitch, one ``espeak_Synth`` per text): ~1.0-1.7 ms per name (~0.75 s of
  speech; 450-1000x real time, Klatt variants slowest), then silence trimming and soxr resampling to 16 kHz.
- Voices run in parallel (``workers`` processes, default one per usable CPU). One worker speaks 500 names of
  ~1.5 s in 2.0 s (espeak 1.3 s, soxr 0.5 s, trimming 0.15 s, start-up 0.3 s). Measured end to end while a
  training job used ~1.5 of the 2 cores (so an idle machine is faster): 500 names x 2 voices cold 5.3 s,
  warm 0.03 s; 2,456 names (mean 1.2 s) x 10 voices cold 82 s, warm 4.5 s, cache 0.96 GB.
- Why one *fresh* process per voice: espeak-ng keeps synthesis state between calls (pitch flutter, noise
  generator), so a clip depends slightly on what was spoken before it in the same process, and the library
  cannot be re-initialised in-process (``espeak_Terminate`` + ``espeak_Initialize`` hangs). A fresh process
  speaking the same list in the same order is bit-for-bit reproducible, so the output is a function of
  (voice, text list, espeak-ng version, sample rate) - exactly the cache key.

Cache: one ``.npz`` per (voice, digest of the distinct texts in order, espeak-ng version, sample rate) under
``cache_dir("speech")``, holding the concatenated int16 samples and their offsets, written atomically (a
temporary file in the same folder, then renamed), so an interrupted run leaves nothing half-written and a warm
load of 25k clips is a few big reads. An unreadable cache file is re-synthesised.

espeak-ng is a system package: a missing library is a :class:`~cl_core.errors.DataError` saying
``apt-get install espeak-ng`` (Debian/Ubuntu).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import functools
import hashlib
import json
import logging
import os
import pickle
import random
import re
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import numpy as np

log = logging.getLogger(__name__)

#: espeak-ng's own output rate, Hz.
ESPEAK_RATE = 22050
#: English base voices of espeak-ng 1.51 ("en" is British English; the library does not resolve "en-gb" by name,
#: so :func:`speak` maps "en-gb" to "en"; the mbrola "mb-*" voices need extra packages and are left out).
BASE_VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
               "en-us-nyc")
#: Voice variants (``+name``): the default, female f1-f5, male m1-m7, Klatt synthesisers.
VARIANTS = ("", "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "klatt", "klatt2",
            "klatt3", "klatt4")
SPEEDS = tuple(range(130, 201, 10))  # words per minute
PITCHES = tuple(range(30, 71, 5))  # espeak's 0-99 scale, 50 = the voice's normal pitch

_INSTALL = ("espeak-ng was not found (the shared library libespeak-ng.so.1); install it with "
            "`apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS)")
_LIBRARY_NAMES = ("libespeak-ng.so.1", "libespeak-ng.so", "libespeak-ng.1.dylib", "libespeak-ng.dylib")
#: bump when the synthesis or trimming below changes, to invalidate old cache files
_FORMAT = 1
_TRIM_FRACTION = 0.005  # of the clip's peak: below this is "silence"
_TRIM_MARGIN_S = 0.005  # kept on each side of the speech, so soft onsets are not cut


def _in_range(low: int, high: int):
    def check(_, attribute, value):
        if not low <= value <= high:
            raise ValueError(f"Voice.{attribute.name} = {value} is outside {low}..{high}")
    return check


@attrs.frozen
class Voice:
    """An espeak-ng voice: ``name`` (``"en-us"``, ``"en-gb+f3"``: base voice + variant), ``speed`` in words per
    minute (80-450) and ``pitch`` (0-99, 50 = the voice's normal pitch)."""

    name: str = attrs.field(validator=attrs.validators.matches_re(r"[A-Za-z0-9_-]+(\+[A-Za-z0-9_ -]+)?"))
    speed: int = attrs.field(default=175, validator=_in_range(80, 450))
    pitch: int = attrs.field(default=50, validator=_in_range(0, 99))

    @property
    def label(self) -> str:
        """Short readable id, e.g. ``"en-gb+f3@160wpm-p45"`` (also names its cache file)."""
        return f"{self.name}@{self.speed}wpm-p{self.pitch}"


def voice_pool(count: int, seed: int) -> list[Voice]:
    """``count`` distinct voices, deterministic in ``seed``, as varied as possible.

    Voice ``i`` uses base voice ``i mod 8`` and variant ``i mod 17`` of seed-shuffled lists (8 and 17 are
    coprime, so the first 136 voices are all different accent x variant pairs, mixing female and male), and a
    (speed, pitch) pair from a per-pair seeded shuffle of ``SPEEDS x PITCHES`` (130-200 wpm, pitch 30-70).

    Raises:
        ValueError: ``count`` negative or above the 9,792 distinct voices available.
    """
    combos = len(BASE_VOICES) * len(VARIANTS)
    settings = [(s, p) for s in SPEEDS for p in PITCHES]
    if not 0 <= count <= combos * len(settings):
        raise ValueError(f"voice_pool: count must be 0..{combos * len(settings)}, got {count}")
    rng = random.Random(seed)
    bases, variants = list(BASE_VOICES), list(VARIANTS)
    rng.shuffle(bases)
    rng.shuffle(variants)
    shuffled: dict[int, list[tuple[int, int]]] = {}
    pool = []
    for i in range(count):
        base, variant = bases[i % len(bases)], variants[i % len(variants)]
        combo = i % combos  # with coprime list lengths, i mod 136 identifies the (base, variant) pair
        if combo not in shuffled:
            shuffled[combo] = random.Random(f"{seed}/{combo}").sample(settings, len(settings))
        speed, pitch = shuffled[combo][i // combos]
        pool.append(Voice(f"{base}+{variant}" if variant else base, speed, pitch))
    return pool


# -- the library -------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _find_library() -> str:
    """The loadable name of libespeak-ng, or a DataError with the install command."""
    from cl_core.api import DataError

    found = ctypes.util.find_library("espeak-ng")
    for name in (*_LIBRARY_NAMES, *([found] if found else [])):
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    raise DataError(_INSTALL)


@functools.lru_cache(maxsize=4)
def espeak_version(library: str | None = None) -> str:
    """espeak-ng's version string (``"1.51"``), from ``espeak_Info``.

    Raises:
        DataError: espeak-ng is not installed (says ``apt-get install espeak-ng``).
    """
    lib = ctypes.CDLL(library or _find_library())
    lib.espeak_Info.restype = ctypes.c_char_p
    data_path = ctypes.c_char_p()
    return lib.espeak_Info(ctypes.byref(data_path)).decode()


class _Default(enum.Enum):
    CACHE = "cache_dir('speech')"


def speak(texts: Sequence[str], voices: Sequence[Voice], *, sample_rate: int = 16000,
          cache: Path | str | None | _Default = _Default.CACHE, workers: int | None = None) -> list[list[np.ndarray]]:
    """Speak every text in every voice.

    Args:
        texts: the words to say (class names); repeated texts are synthesised once.
        voices: espeak-ng voices (see :func:`voice_pool`).
        sample_rate: of the returned clips, Hz (espeak-ng's 22,050 Hz output resampled with soxr).
        cache: folder of the cache files; default ``cache_dir("speech")``; None: no cache.
        workers: parallel synthesis processes (one voice each); default the number of usable CPUs.

    Returns:
        ``out[v][t]``: int16 mono waveform ``[samples]`` of ``texts[t]`` in ``voices[v]`` at ``sample_rate``,
        leading and trailing silence trimmed (a name is typically 0.4-1.5 s). Clips of one voice are views of
        one array; equal texts share one clip.

    Raises:
        DataError: espeak-ng is missing (with the install command), a voice is unknown, or a text gives no audio.
        ValueError: a text is empty or blank.
    """
    from cl_core.api import DataError, cache_dir

    texts = list(texts)
    blank = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if blank:
        raise ValueError(f"speak: texts must be non-empty strings; item(s) {blank[:10]} are not")
    library = _find_library()
    version = espeak_version(library)
    unique = list(dict.fromkeys(texts))
    row = {t: i for i, t in enumerate(unique)}
    folder = Path(cache_dir("speech") if cache is _Default.CACHE else cache) if cache is not None else None
    digest = hashlib.sha256(json.dumps(unique, ensure_ascii=False).encode()).hexdigest()

    def cache_file(voice: Voice) -> Path:
        key = json.dumps([_FORMAT, version, voice.name, voice.speed, voice.pitch, sample_rate, digest])
        slug = re.sub(r"[^A-Za-z0-9@+.-]", "_", voice.label)
        return folder / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"  # type: ignore[operator]

    clips: dict[Voice, tuple[np.ndarray, np.ndarray]] = {}
    todo = []
    for voice in dict.fromkeys(voices):
        loaded = _load(cache_file(voice), len(unique)) if folder is not None else None
        if loaded is None:
            todo.append(voice)
        else:
            clips[voice] = loaded
    if todo:
        log.info("speech: synthesising %d text(s) in %d voice(s) with espeak-ng %s", len(unique), len(todo),
                 version)
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = max(1, min(len(todo), workers or usable))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda v: _synthesize_voice(v, unique, sample_rate, library), todo))
        for voice, (audio, offsets) in zip(todo, results):
            empty = [unique[i] for i in np.flatnonzero(np.diff(offsets) == 0)]
            if empty:
                raise DataError(f"espeak-ng voice {voice.name!r} produced no audio for {len(empty)} text(s): "
                                + ", ".join(repr(t) for t in empty[:10]))
            clips[voice] = (audio, offsets)
            if folder is not None:
                _save(cache_file(voice), audio, offsets)
    out = []
    for voice in voices:
        audio, offsets = clips[voice]
        per_text = [audio[offsets[i]:offsets[i + 1]] for i in range(len(unique))]
        out.append([per_text[row[t]] for t in texts])
    return out


def _load(path: Path, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            audio, offsets = data["audio"], data["offsets"]
        if audio.dtype != np.int16 or offsets.shape != (count + 1,) or offsets[-1] != audio.size:
            raise ValueError("inconsistent arrays")
        return audio, offsets
    except Exception as exc:  # a damaged cache file is only a cache miss
        log.warning("speech: ignoring unreadable cache file %s (%s); synthesising again", path, exc)
        return None


def _save(path: Path, audio: np.ndarray, offsets: np.ndarray) -> None:
    from cl_core.api import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a bare temporary name
            np.savez(fh, audio=audio, offsets=offsets)

    try:
        atomic_write(path, write)
    except OSError as exc:  # an unwritable cache costs time next run, never the result
        log.warning("speech: could not write the cache file %s (%s)", path, exc)


def _synthesize_voice(voice: Voice, texts: list[str], sample_rate: int,
                      library: str) -> tuple[np.ndarray, np.ndarray]:
    """Run one fresh worker process (``python -m cl_imagebind.speech``) that speaks ``texts`` in ``voice``."""
    from cl_core.api import DataError

    job = pickle.dumps({"voice": (voice.name, voice.speed, voice.pitch), "texts": texts,
                        "sample_rate": sample_rate, "library": library})
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])  # so the worker imports this very package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-m", "cl_imagebind.speech"], input=job, capture_output=True, env=env,
                          check=False)
    if done.returncode == 3:
        raise DataError(done.stderr.decode(errors="replace").strip().splitlines()[-1])
    if done.returncode != 0:
        tail = "\n".join(done.stderr.decode(errors="replace").strip().splitlines()[-15:])
        raise RuntimeError(f"espeak-ng worker for voice {voice.label} failed (exit code {done.returncode}):\n"
                           f"{tail}")
    return pickle.loads(done.stdout)


# -- the worker process ------------------------------------------------------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE_PARAM, _ESPEAK_PITCH_PARAM = 1, 3
_CHARS_UTF8 = 1
_ALIASES = {"en-gb": "en"}
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _trim(clip: np.ndarray, rate: int) -> np.ndarray:
    """Cut leading/trailing samples quieter than 0.5 % of the clip's peak, keeping a 5 ms margin."""
    if clip.size == 0:
        return clip
    loud = np.flatnonzero(np.abs(clip.astype(np.int32)) > max(8, _TRIM_FRACTION * np.abs(clip).max()))
    if loud.size == 0:
        return clip[:0]
    margin = int(_TRIM_MARGIN_S * rate)
    return clip[max(0, loud[0] - margin):loud[-1] + 1 + margin]


def _worker_main() -> int:
    """Speak the pickled job read from stdin; pickled ``(int16 audio, int64 offsets)`` to stdout.

    Exit code 3 with the message on stderr's last line: a user error (unknown voice).
    """
    job = pickle.load(sys.stdin.buffer)
    # the C library may print warnings on stdout: keep the real stdout for the result only
    result_fd = os.dup(1)
    os.dup2(2, 1)
    import soxr

    lib = ctypes.CDLL(job["library"])
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 500, None, 0)
    if rate <= 0:
        print(f"espeak_Initialize failed ({rate}); is espeak-ng-data installed?", file=sys.stderr)
        return 2
    chunks: list[bytes] = []

    def collect(wav, count, events) -> int:
        if count > 0:
            chunks.append(ctypes.string_at(wav, count * 2))
        return 0  # 0 = go on synthesising

    callback = _CALLBACK(collect)  # kept referenced for the library's lifetime
    lib.espeak_SetSynthCallback(callback)
    name, speed, pitch = job["voice"]
    base, plus, variant = name.partition("+")
    # "en-gb" is listed by `espeak-ng --voices` but only the CLI resolves it; the library knows it as "en"
    lookup = _ALIASES.get(base.lower(), base) + plus + variant
    if lib.espeak_SetVoiceByName(lookup.encode()) != 0:
        print(f"unknown espeak-ng voice {name!r}; list them with `espeak-ng --voices=en` and "
              f"`espeak-ng --voices=variant` (a variant is added as 'base+variant')", file=sys.stderr)
        return 3
    lib.espeak_SetParameter(_ESPEAK_RATE_PARAM, int(speed), 0)
    lib.espeak_SetParameter(_ESPEAK_PITCH_PARAM, int(pitch), 0)
    out_rate = job["sample_rate"]
    pieces, offsets = [], [0]
    for text in job["texts"]:
        chunks.clear()
        data = text.encode() + b"\0"
        lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8, None, None)
        clip = _trim(np.frombuffer(b"".join(chunks), dtype=np.int16), rate)
        if clip.size and out_rate != rate:
            clip = soxr.resample(clip, rate, out_rate, quality="HQ")
        pieces.append(clip)
        offsets.append(offsets[-1] + clip.size)
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
    with os.fdopen(result_fd, "wb") as fh:
        pickle.dump((audio.astype(np.int16, copy=False), np.asarray(offsets, dtype=np.int64)), fh, protocol=5)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
