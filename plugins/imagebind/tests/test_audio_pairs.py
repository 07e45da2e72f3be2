"""``imagebind.audio-pairs``: user (image, audio) pairs from JSONL/CSV, checked at build time."""

from __future__ import annotations

import importlib.util
import json
import wave

import numpy as np
import pytest

from cl_core.api import DataError
from cl_imagebind.audio_pairs import AudioPairsDataset, ImageAudioSource, build_audio_pairs, read_pairs
from cl_imagebind.pairs_params import AudioPairsParams

RATE = 16000
HAVE_AUDIO_IO = importlib.util.find_spec("cl_imagebind.audio_io") is not None


def _standin_read_audio(path, *, sample_rate=16000, strict=False):
    """The ``read_audio`` contract for 16-bit mono WAVs at ``sample_rate`` (used until ``audio_io`` exists)."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getframerate() != sample_rate or w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise DataError(f"{path}: stand-in reader needs 16-bit mono at {sample_rate} Hz")
            data = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise DataError(f"{path}: not a readable WAV file ({exc})") from exc
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


@pytest.fixture
def read():
    """The real reader when ``cl_imagebind.audio_io`` is there, else the stand-in."""
    if HAVE_AUDIO_IO:
        from cl_imagebind.audio_io import read_audio

        return read_audio
    return _standin_read_audio


def test_jsonl_with_labels(pairs_folder, read):
    ds = AudioPairsDataset(AudioPairsParams(pairs=str(pairs_folder / "pairs.jsonl"), image_size=16, holdout=0.0), read)
    assert set(ds.splits()) == {"train"} and ds.labeled and ds.skipped == 0
    train = ds.splits()["train"]
    assert isinstance(train, ImageAudioSource) and train.fields == ("image", "audio") and len(train) == 3
    assert train.class_names == ["blue", "green", "red"]
    assert [train.class_names[k] for k in train.labels] == ["red", "green", "blue"]  # file order kept
    batch = train.get([0, 1, 2])
    assert set(batch) == {"image", "audio"}
    for k, (image, audio) in enumerate(zip(batch["image"], batch["audio"])):
        assert image.mode == "RGB" and image.size == (16, 16)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert abs(len(audio) - int(RATE * 0.1 * (k + 1))) <= 2  # same duration at 16 kHz
        assert 0.3 < np.abs(audio).max() <= 0.51
    # the red image is red (padded with white to a square: 16x8 -> 16x16)
    red = np.asarray(batch["image"][0])
    assert tuple(red[8, 8]) == (255, 0, 0) and tuple(red[0, 8]) == (255, 255, 255)
    # fresh copies: modifying them leaves the dataset intact
    batch["audio"][0][:] = 0
    assert np.abs(train.get([0])["audio"][0]).max() > 0.3


def test_csv_without_labels_holds_out_images(pairs_folder, read):
    ds = AudioPairsDataset(AudioPairsParams(pairs=str(pairs_folder / "pairs.csv"), image_size=8, holdout=0.34), read)
    splits = ds.splits()
    assert not ds.labeled and set(splits) == {"train", "heldout"}
    assert (len(splits["train"]), len(splits["heldout"])) == (2, 1)
    assert splits["train"].class_names is None and splits["heldout"].class_names is None
    assert sorted(splits["train"].labels.tolist()) == [0, 1]
    images = set(splits["train"].meta["image"]) | set(splits["heldout"].meta["image"])
    assert images == {"img/red.png", "img/green.png", "img/blue.png"}
    # the split depends on the seed only
    again = AudioPairsDataset(AudioPairsParams(pairs=str(pairs_folder / "pairs.csv"), image_size=8, holdout=0.34), read)
    assert list(again.splits()["heldout"].meta["image"]) == list(splits["heldout"].meta["image"])


def test_root_and_labelled_heldout(pairs_folder, read, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    (other / "p.jsonl").write_text((pairs_folder / "pairs.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    ds = AudioPairsDataset(AudioPairsParams(pairs=str(other / "p.jsonl"), root=str(pairs_folder), image_size=8,
                                            holdout=0.34, split_seed=3), read)
    train, held = ds.splits()["train"], ds.splits()["heldout"]
    assert len(train) + len(held) == 3 and len(held) == 1
    assert set(train.class_names).isdisjoint(held.class_names)


def test_bad_rows_and_files_are_listed_together(pairs_folder, read):
    (pairs_folder / "wav" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    lines = (pairs_folder / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    lines += [
        json.dumps({"image": "img/missing.png", "audio": "wav/red.wav", "label": "red"}),  # line 4
        json.dumps({"image": "img/red.png", "audio": "wav/broken.wav", "label": "red"}),  # line 5
        '{"image": "img/red.png", "audio": ',  # line 6: bad JSON
        json.dumps({"image": "img/red.png", "label": "red"}),  # line 7: no audio
    ]
    bad = pairs_folder / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        AudioPairsDataset(AudioPairsParams(pairs=str(bad), image_size=8), read)
    message = str(info.value)
    assert message.startswith(f"{bad}: 1 missing or unreadable image(s) and 1 missing or unreadable audio file(s) "
                              "and 2 malformed row(s)")
    assert f"{pairs_folder / 'img' / 'missing.png'}: file not found (first used at {bad}:4)" in message
    assert f"{pairs_folder / 'wav' / 'broken.wav'}: unreadable audio" in message and f"{bad}:5)" in message
    assert f"{bad}:6: invalid JSON" in message
    assert f"{bad}:7: missing 'audio'" in message
    assert "skip_bad" in message

    ds = AudioPairsDataset(AudioPairsParams(pairs=str(bad), image_size=8, holdout=0.0, skip_bad=True), read)
    assert (ds.skipped, ds.skipped_rows, ds.skipped_images, ds.skipped_audio) == (4, 2, 1, 1)
    assert len(ds.problems) == 4 and len(ds.splits()["train"]) == 3


def test_corrupt_image_and_csv_row_problems(pairs_folder, read):
    (pairs_folder / "img" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    csv_path = pairs_folder / "more.csv"
    csv_path.write_text("image,audio,label\n"
                        "img/red.png,wav/red.wav,red\n"
                        "img/bad.png,wav/green.wav,green\n"
                        "img/blue.png,wav/blue.wav\n"  # line 4: no label while others have one
                        "img/blue.png,wav/blue.wav,blue,extra\n"  # line 5: too many cells
                        "img/green.png,wav/nowhere.wav,green\n", encoding="utf-8")  # line 6
    with pytest.raises(DataError) as info:
        AudioPairsDataset(AudioPairsParams(pairs=str(csv_path), image_size=8), read)
    message = str(info.value)
    assert f"{pairs_folder / 'img' / 'bad.png'}: unreadable image" in message
    assert f"{pairs_folder / 'wav' / 'nowhere.wav'}: file not found (first used at {csv_path}:6)" in message
    assert f"{csv_path}:4: missing 'label' (other rows have one)" in message
    assert f"{csv_path}:5: 1 more cell(s) than header columns" in message


def test_pairs_file_problems(pairs_folder, read):
    header = pairs_folder / "noaudio.csv"
    header.write_text("image,sound\nimg/red.png,wav/red.wav\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"noaudio\.csv:1: header lacks column\(s\) 'audio'"):
        read_pairs(header)
    other = pairs_folder / "pairs.txt"
    other.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported pairs file type '.txt'"):
        read_pairs(other)
    empty = pairs_folder / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no usable rows"):
        AudioPairsDataset(AudioPairsParams(pairs=str(empty)), read)


def test_params_are_validated(pairs_folder):
    with pytest.raises(ValueError):
        AudioPairsParams(pairs=str(pairs_folder / "pairs.jsonl"), holdout=1.0)
    with pytest.raises(ValueError):
        AudioPairsParams(pairs=str(pairs_folder / "nope.jsonl"))
    with pytest.raises(ValueError):
        AudioPairsParams(pairs=str(pairs_folder / "pairs.jsonl"), root=str(pairs_folder / "nope"))
    with pytest.raises(ValueError):
        AudioPairsParams(pairs=str(pairs_folder / "pairs.jsonl"), image_size=4)


@pytest.mark.skipif(not HAVE_AUDIO_IO, reason="cl_imagebind.audio_io (read_audio) not written yet")
def test_factory_uses_read_audio(pairs_folder):
    ds = build_audio_pairs(AudioPairsParams(pairs=str(pairs_folder / "pairs.jsonl"), image_size=8, holdout=0.0), None)
    assert len(ds.splits()["train"]) == 3


def test_audio_pairs_round_trip_through_shards(pairs_folder, read, tmp_path):
    """``cl data shard`` of an (image, audio) source: waveforms, images and labels come back from the shards."""
    import torch

    from cl_datasets.params import ShardsParams, StreamParams
    from cl_datasets.shards import write_shards
    from cl_datasets.stream import ShardsDataset, StreamSampler

    ds = AudioPairsDataset(AudioPairsParams(pairs=str(pairs_folder / "pairs.jsonl"), image_size=16, holdout=0.0), read)
    train = ds.splits()["train"]
    index = write_shards(train, tmp_path / "shards", split="train", shard_size=2)
    assert index["fields"] == {"image": "png", "audio": "npy", "label": "cls"}
    streamed = ShardsDataset(ShardsParams(root=str(tmp_path / "shards"))).splits()["train"]
    assert streamed.class_names == ["blue", "green", "red"]
    sampler = StreamSampler(StreamParams(batch_size=3, shuffle=0))
    (batch,) = sampler.batches(streamed, generator=torch.Generator().manual_seed(0))
    want = train.get([0, 1, 2])
    by_label = {int(k): i for i, k in enumerate(batch.labels)}
    for row, label in enumerate(train.labels.tolist()):
        got = by_label[label]
        assert np.array_equal(batch.inputs["audio"][got], want["audio"][row])  # float32, bit for bit
        assert np.array_equal(np.asarray(batch.inputs["image"][got]), np.asarray(want["image"][row]))
