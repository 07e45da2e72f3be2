"""speak(): espeak-ng clips of plausible length, voice-dependent, reproducible, cached; voice_pool; missing espeak."""

from __future__ import annotations

import ctypes.util

import numpy as np
import pytest

from cl_core.api import DataError
from cl_imagebind import speech
from cl_imagebind.speech import BASE_VOICES, PITCHES, SPEEDS, VARIANTS, Voice, speak, voice_pool


def _espeak_available() -> bool:
    try:
        speech._find_library()
    except DataError:
        return False
    return True


needs_espeak = pytest.mark.skipif(not _espeak_available(),
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")

NAMES = ["toucan", "golden retriever", "grand piano", "red fox"]
VOICES = [Voice("en-us", 175, 50), Voice("en+f3", 150, 65)]


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech-cache")
    return folder, speak(NAMES, VOICES, cache=folder)


@needs_espeak
def test_clips_are_int16_of_plausible_length(spoken):
    _, out = spoken
    assert len(out) == len(VOICES) and all(len(row) == len(NAMES) for row in out)
    for row in out:
        for clip in row:
            assert clip.dtype == np.int16 and clip.ndim == 1
            assert 0.2 <= clip.size / 16000 <= 3.0
            assert np.abs(clip.astype(np.int32)).max() > 1000  # real speech, not near-silence
    # longer names take longer to say, in every voice
    for row in out:
        assert row[1].size > row[0].size * 1.2  # "golden retriever" vs "toucan"


@needs_espeak
def test_silence_is_trimmed(spoken):
    _, out = spoken
    for clip in (c for row in out for c in row):
        edge = int(0.02 * 16000)
        peak = np.abs(clip.astype(np.int32)).max()
        # within 20 ms of each end there is sound above the trimming threshold (0.5 % of the peak)
        assert np.abs(clip[:edge].astype(np.int32)).max() > 0.005 * peak
        assert np.abs(clip[-edge:].astype(np.int32)).max() > 0.005 * peak


@needs_espeak
def test_voices_differ(spoken):
    _, out = spoken
    for a, b in zip(out[0], out[1]):
        assert a.size != b.size or not np.array_equal(a, b)
    # a slower voice says the same names in more time
    assert sum(c.size for c in out[1]) > sum(c.size for c in out[0])


@needs_espeak
def test_deterministic_without_cache(spoken):
    _, out = spoken
    again = speak(NAMES, VOICES, cache=None)
    for row, row_again in zip(out, again):
        for a, b in zip(row, row_again):
            np.testing.assert_array_equal(a, b)


@needs_espeak
def test_cache_hit_does_not_call_espeak(spoken, monkeypatch):
    folder, out = spoken
    files = sorted(folder.iterdir())
    assert len(files) == len(VOICES) and all(f.suffix == ".npz" for f in files)
    assert not [f for f in folder.iterdir() if f.name.startswith(".")]  # no temporary leftovers

    def refuse(*args, **kwargs):
        raise AssertionError("espeak-ng was called on a warm cache")

    monkeypatch.setattr(speech, "_synthesize_voice", refuse)
    warm = speak(NAMES, VOICES, cache=folder)
    for row, row_warm in zip(out, warm):
        for a, b in zip(row, row_warm):
            np.testing.assert_array_equal(a, b)
    # another text list or another voice is a miss
    with pytest.raises(AssertionError, match="warm cache"):
        speak(NAMES[:2], VOICES, cache=folder)
    with pytest.raises(AssertionError, match="warm cache"):
        speak(NAMES, [Voice("en-us", 175, 51)], cache=folder)


@needs_espeak
def test_damaged_cache_file_is_synthesised_again(tmp_path):
    first = speak(NAMES[:2], VOICES[:1], cache=tmp_path)
    (cache_file,) = tmp_path.iterdir()
    cache_file.write_bytes(b"garbage")
    again = speak(NAMES[:2], VOICES[:1], cache=tmp_path)
    for a, b in zip(first[0], again[0]):
        np.testing.assert_array_equal(a, b)
    assert np.load(cache_file)["audio"].dtype == np.int16  # rewritten


@needs_espeak
def test_repeated_texts_and_other_rates(tmp_path):
    out = speak(["red fox", "toucan", "red fox"], VOICES[:1], sample_rate=8000, cache=None)
    np.testing.assert_array_equal(out[0][0], out[0][2])
    at16 = speak(["red fox"], VOICES[:1], cache=None)[0][0]
    assert abs(out[0][0].size * 2 - at16.size) <= 4  # same speech, half the samples


@needs_espeak
def test_en_gb_is_british_english():
    gb, en = speak(["tomato"], [Voice("en-gb+f3"), Voice("en+f3")], cache=None)
    np.testing.assert_array_equal(gb[0], en[0])


@needs_espeak
def test_unknown_voice_and_blank_text(tmp_path):
    with pytest.raises(DataError, match="unknown espeak-ng voice 'xx-nowhere'"):
        speak(["hello"], [Voice("xx-nowhere")], cache=None)
    with pytest.raises(ValueError, match=r"item\(s\) \[1\]"):
        speak(["hello", "  "], VOICES, cache=None)


def test_missing_espeak_says_how_to_install(monkeypatch):
    speech._find_library.cache_clear()
    monkeypatch.setattr(speech, "_LIBRARY_NAMES", ("libespeak-ng-not-here.so.1",))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    try:
        with pytest.raises(DataError, match=r"apt-get install espeak-ng"):
            speak(["hello"], [Voice("en-us")], cache=None)
    finally:
        speech._find_library.cache_clear()


def test_voice_pool_is_distinct_varied_and_seeded():
    pool = voice_pool(200, seed=3)
    assert len(set(pool)) == 200
    assert pool == voice_pool(200, seed=3)
    assert pool != voice_pool(200, seed=4)
    assert voice_pool(10, seed=3) == pool[:10]  # a prefix: growing the pool keeps the first voices
    first = pool[:17]
    assert len({v.name.split("+")[0] for v in first}) == len(BASE_VOICES)
    assert len({v.name.partition("+")[2] for v in first}) == len(VARIANTS)
    assert all(v.speed in SPEEDS and v.pitch in PITCHES for v in pool)
    assert len({v.speed for v in pool}) == len(SPEEDS) and len({v.pitch for v in pool}) == len(PITCHES)
    assert len({v.label for v in pool}) == 200
    assert Voice("en-gb-x-rp+f2", 160, 45).label == "en-gb-x-rp+f2@160wpm-p45"
    with pytest.raises(ValueError):
        voice_pool(10**6, seed=0)
    with pytest.raises(ValueError, match="pitch"):
        Voice("en-us", 175, 120)


@needs_espeak
def test_every_pool_voice_is_known_to_espeak(tmp_path):
    # each base voice and each variant once (17 voices cover all 8 bases and all 17 variants)
    out = speak(["hi"], voice_pool(17, seed=0), cache=None)
    assert all(row[0].size > 0 for row in out)
