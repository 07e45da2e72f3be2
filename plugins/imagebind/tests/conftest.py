"""Fixtures of the cl-imagebind tests (offline, CPU, seconds): stand-ins for espeak-ng and the line-art renderer,
a folder of (image, audio) pairs, and a tiny ImageBind spec on the committed emoji slice of cl-datasets."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cl_datasets.testing import emoji_fixture_paths

RATE = 16000


def fake_speak(texts, voices, **kwargs):
    """``speech.speak``'s shape with no espeak-ng: the waveform of (voice v, text t) is 800 samples of the constant
    1000 * v + t, so every item says who spoke what."""
    return [[np.full(800, 1000 * v + t, dtype=np.int16) for t in range(len(texts))] for v in range(len(voices))]


def fake_lineart(hexcodes, size, allow_blank=False, **kwargs):
    """``lineart.draw_lineart``'s shape with no SVGs: glyph i is a flat grey of value i % 250."""
    return np.stack([np.full((size, size, 3), i % 250, dtype=np.uint8) for i in range(len(hexcodes))])


@pytest.fixture
def fake_media(monkeypatch):
    """Make ``imagebind.emoji`` (through its registered factory too) speak and draw with :func:`fake_speak` and
    :func:`fake_lineart`: it then builds in well under a second, without espeak-ng and without the user cache."""
    from cl_imagebind import lineart, speech

    monkeypatch.setattr(speech, "speak", fake_speak)
    monkeypatch.setattr(lineart, "draw_lineart", fake_lineart)


def write_wav(path: Path, freq: float, seconds: float = 0.1) -> None:
    """A 16-bit mono sine of ``freq`` Hz at half scale, ``seconds`` long, at 16 kHz."""
    t = np.arange(int(RATE * seconds)) / RATE
    pcm = (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


@pytest.fixture
def pairs_folder(tmp_path):
    """3 tiny PNGs (red, green, blue; one not square) and 3 tiny WAVs (220, 440, 660 Hz; 0.1, 0.2, 0.3 s), plus
    ``pairs.jsonl`` (with a ``label`` per colour) and ``pairs.csv`` (without) naming them."""
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    (tmp_path / "img").mkdir()
    (tmp_path / "wav").mkdir()
    for i, (name, rgb) in enumerate(colours.items()):
        Image.new("RGB", (12, 12) if i else (16, 8), rgb).save(tmp_path / "img" / f"{name}.png")
        write_wav(tmp_path / "wav" / f"{name}.wav", 220.0 * (i + 1), seconds=0.1 * (i + 1))
    rows = [{"image": f"img/{n}.png", "audio": f"wav/{n}.wav", "label": n} for n in colours]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "pairs.csv").write_text(
        "image,audio\n" + "".join(f"{r['image']},{r['audio']}\n" for r in rows), encoding="utf-8")
    return tmp_path


#: ImageBind on the emoji slice with towers of a few hundred weights: two pair types (image-audio, image-lineart)
#: in batches of their own, 8 steps, the cross-modal table at the end. ``{out}`` and ``{name}`` are filled in.
BIND_SPEC = """
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "{name}"
[data]
type = "imagebind.emoji"
openmoji_json = "{openmoji_json}"
noto_dir = "{noto_dir}"
image_size = 32
holdout = 0.25
voices = 3
heldout_voices = 1
lineart_size = 32
[sampler]
type = "core.in-batch"
batch_size = 8
mix = "proportional"
[encoders.image]
type = "clip.vit"
image_size = 32
patch = 16
width = 16
layers = 1
embed_dim = 16
freeze = true
[encoders.audio]
type = "imagebind.audio"
n_mels = 16
clip_seconds = 1.0
channels = [4, 8]
embed_dim = 16
[encoders.lineart]
type = "clip.vit"
image_size = 32
patch = 16
width = 16
layers = 1
embed_dim = 16
[[objective]]
type = "core.contrastive"
roles = ["image", "audio"]
loss = {{ type = "core.clip", label_aware = true }}
scorer = {{ type = "core.cosine", temperature = 0.05, learn_temperature = false }}
[[objective]]
type = "core.contrastive"
roles = ["image", "lineart"]
loss = {{ type = "core.clip", label_aware = true }}
scorer = {{ type = "core.cosine", temperature = 0.1, learn_temperature = false }}
[trainer]
epochs = 1
max_steps = 8
lr = 0.01
checkpoint_every = 3
log_every = 1
progress = false
plots = false
[[evaluate]]
type = "imagebind.bind"
ks = [1, 5]
"""


@pytest.fixture
def bind_spec(tmp_path):
    """``make(name) -> path`` of :data:`BIND_SPEC` written into ``tmp_path``, its runs going to ``tmp_path/runs``."""
    def make(name):
        path = tmp_path / f"{name}.toml"
        path.write_text(BIND_SPEC.format(out=tmp_path / "runs", name=name, **emoji_fixture_paths()), encoding="utf-8")
        return path
    return make
