"""``imagebind.bind``: recall of every ordered pair, emergent ratio and arithmetic, on hand-made embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cl_core.api import EvalContext
from cl_imagebind.emoji_bind import BindSource
from cl_imagebind.evaluation import BindEvaluator, class_ranks
from cl_imagebind.params import BindParams


class FakePipeline:
    """Items are already vectors: embed() stacks them (the evaluator normalises)."""

    def __init__(self, roles):
        self.encoders = dict.fromkeys(roles)

    def embed(self, role, items, *, batch_size=256):
        return torch.stack([torch.as_tensor(i, dtype=torch.float32) for i in items])


def onehot(i, n=4):
    v = np.zeros(n, np.float32)
    v[i] = 1.0
    return v


def source(audio_rows):
    """4 classes x 2 voices; image and text are the class's one-hot vector, audio as given per row."""
    labels = np.repeat(np.arange(4), 2)
    store = [onehot(i) for i in range(4)]
    fetch = store.__getitem__
    columns = {"image": (labels, fetch), "text": (labels, fetch),
               "audio": (np.arange(8), [np.asarray(a, np.float32) for a in audio_rows].__getitem__)}
    return BindSource(columns, labels, ["a", "b", "c", "d"])


class OneSplit:
    def __init__(self, src, name="voices"):
        self._s = {"train": src, name: src}

    def splits(self):
        return self._s


def test_class_ranks_counts_ties_against_the_model():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    g = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    assert class_ranks(q, torch.tensor([0, 1, 1]), g).tolist() == [1, 1, 2]
    tied = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert class_ranks(q[:1], torch.tensor([0]), tied).tolist() == [2], "a tie with a wrong class is not a hit"


def test_every_ordered_pair_and_the_emergent_ratio():
    # voice 0 says the right class; voice 1 is confused with the next class
    audio = [onehot(c) if v == 0 else onehot((c + 1) % 4) for c in range(4) for v in range(2)]
    ev = BindEvaluator(BindParams(ks=(1, 2)))
    m = ev.evaluate(FakePipeline(["image", "text", "audio"]), OneSplit(source(audio)), EvalContext(torch.device("cpu")))
    assert m["bind/voices/audio2image@1"] == pytest.approx(0.5)
    assert m["bind/voices/audio2text@1"] == pytest.approx(0.5)
    assert m["bind/voices/audio/emergent_ratio"] == pytest.approx(1.0)
    assert m["bind/voices/image2text@1"] == 1.0
    # the gallery of audio is each class's first example (voice 0, correct), so image -> audio is perfect
    assert m["bind/voices/image2audio@1"] == 1.0
    assert m["bind/voices/chance@1"] == pytest.approx(0.25)
    assert "bind/voices/text/emergent_ratio" not in m


def test_emergent_ratio_drops_when_text_is_not_reached():
    # audio aligned with images on dims 0-3 but the text tower lives elsewhere: text vectors are permuted
    audio = [onehot(c) for c in range(4) for _ in range(2)]
    src = source(audio)
    perm = [onehot((i + 2) % 4) for i in range(4)]
    src._columns["text"] = (src._columns["text"][0], perm.__getitem__)
    m = BindEvaluator(BindParams(ks=(1,))).evaluate(FakePipeline(["image", "text", "audio"]), OneSplit(src),
                                                     EvalContext(torch.device("cpu")))
    assert m["bind/voices/audio2image@1"] == 1.0
    assert m["bind/voices/audio2text@1"] == 0.0 and m["bind/voices/audio/emergent_ratio"] == 0.0


def test_arithmetic_sums_normalised_embeddings():
    # gallery: 3 concepts; z = 2 lies between image a (dim 0) and audio b (dim 1)
    gallery = [np.array([1, 0, 0], np.float32), np.array([0, 1, 0], np.float32), np.array([1, 1, 0.2], np.float32)]
    columns = {"image": (np.array([0]), gallery.__getitem__), "audio": (np.array([0]), [gallery[1]].__getitem__)}
    src = BindSource(columns, np.array([2]), ["a", "b", "ab"])
    src.gallery = lambda: gallery
    m = BindEvaluator(BindParams(ks=(1,))).evaluate(FakePipeline(["image", "audio"]), OneSplit(src, "arithmetic"),
                                                     EvalContext(torch.device("cpu")))
    assert m["bind/arithmetic/image+audio@1"] == 1.0
    assert m["bind/arithmetic/image@1"] == 0.0 and m["bind/arithmetic/audio@1"] == 0.0
