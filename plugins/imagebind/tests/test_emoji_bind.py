"""``imagebind.emoji``: pair types bound to one anchor only, held-out voices and concepts, compositions."""

from __future__ import annotations

import numpy as np
import pytest

from cl_core.api import DataError
from cl_datasets.testing import emoji_fixture_paths
from cl_imagebind.emoji_bind import EmojiBindDataset, compositions
from cl_imagebind.params import EmojiBindParams

# conftest's stand-ins speak and draw: the waveform of (voice v, concept t) is the constant 1000 * v + t
pytestmark = pytest.mark.usefixtures("fake_media")


def build(**overrides):
    params = EmojiBindParams(**{**emoji_fixture_paths(), "image_size": 16, "holdout": 0.25, "voices": 5,
                                "heldout_voices": 2, "lineart_size": 16, **overrides})
    return EmojiBindDataset(params)


def _speaker(wave):
    return int(wave[0]) // 1000


def test_image_anchor_pairs_each_new_modality_with_images_only():
    data = build()
    train = data.splits()["train"]
    assert train.group_names == ["image-audio", "image-lineart"]
    n = len(data.emoji.train_concepts)
    audio_rows = np.flatnonzero(train.groups == 0)
    assert len(audio_rows) == n * 3, "every training concept in each of the 3 training voices"
    batch = train.get(audio_rows[:7].tolist())
    assert set(batch) == {"image", "audio"}, "no (audio, text) pair with the image anchor"
    assert {_speaker(w) for w in train.get(audio_rows.tolist())["audio"]} == {0, 1, 2}, "held-out voices stay out"
    lines = train.get(np.flatnonzero(train.groups == 1)[:5].tolist())
    assert set(lines) == {"image", "lineart"}
    with pytest.raises(DataError, match="mixes the pair types"):
        train.get([int(audio_rows[0]), int(np.flatnonzero(train.groups == 1)[0])])


def test_speech_and_names_line_up_with_their_concepts():
    data = build()
    train = data.splits()["train"]
    names = [c.annotation for c in data.emoji.train_concepts] + [c.annotation for c in data.emoji.heldout_concepts]
    rows = np.flatnonzero(train.groups == 0)
    for i, wave in zip(rows, train.get(rows.tolist())["audio"]):
        spoken = names[int(wave[0]) % 1000]
        assert spoken == train.class_names[train.labels[i]]


def test_evaluation_splits_use_held_out_voices_and_concepts():
    data = build()
    voices, held = data.splits()["voices"], data.splits()["heldout"]
    assert len(voices) == 2 * len(data.emoji.train_concepts)
    assert set(voices.fields) == {"image", "text", "audio", "lineart"}
    got = voices.get(list(range(len(voices))))
    assert {_speaker(w) for w in got["audio"]} == {3, 4}
    assert [got["text"][i] for i in range(0, len(voices), 2)] == voices.class_names
    assert held.class_names == [c.annotation for c in data.emoji.heldout_concepts]
    assert not set(held.class_names) & set(data.splits()["train"].class_names)


def test_text_anchor_is_languagebind():
    data = build(anchor="text", modalities=("audio",))
    train = data.splits()["train"]
    assert train.group_names == ["text-audio"]
    batch = train.get([0, 1, 2])
    assert set(batch) == {"text", "audio"}
    assert batch["text"][0] == train.class_names[train.labels[0]]


def test_compositions_are_zwj_sequences_of_two_known_concepts():
    codes = ["1F469", "1F4BB", "1F469-200D-1F4BB", "1F3F3-FE0F", "1F308", "1F3F3-FE0F-200D-1F308",
             "1F468-200D-1F469-200D-1F467", "1F9D1-200D-1F680"]
    assert compositions(codes) == [("1F469", "1F4BB", "1F469-200D-1F4BB"),
                                   ("1F3F3-FE0F", "1F308", "1F3F3-FE0F-200D-1F308")]


@pytest.mark.parametrize("bad", [{"voices": 3, "heldout_voices": 3}, {"modalities": ()}, {"anchor": "audio"},
                                 {"modalities": ("audio", "depth")}])
def test_bad_params_are_spec_errors(bad):
    with pytest.raises(ValueError):
        EmojiBindParams(**bad)
