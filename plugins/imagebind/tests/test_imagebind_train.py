"""ImageBind trained through the core end to end on the emoji fixture with real espeak-ng speech and tiny towers:
two pair types in batches of their own, the cross-modal table, and a resume after a kill that ends with the same
weights bit for bit."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from cl_core.api import train
from cl_datasets.testing import emoji_fixture_paths

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (apt-get install espeak-ng)")

SPEC = """
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


class Killed(Exception):
    pass


@pytest.fixture
def spec(tmp_path):
    def make(name):
        path = tmp_path / f"{name}.toml"
        path.write_text(SPEC.format(out=tmp_path / "runs", name=name, **emoji_fixture_paths()), encoding="utf-8")
        return path
    return make


def test_two_pair_types_train_and_the_table_has_every_pair(spec):
    result = train(spec("full"), log=lambda m: None)
    m = result.results
    for pair in ("audio2image", "image2audio", "lineart2image", "audio2lineart", "lineart2audio"):
        assert 0.0 <= m[f"bind/voices/{pair}@1"] <= 1.0
    # 31 training concepts: the 4 OpenMoji-only ones and 27 of the 36 in both styles (holdout 0.25)
    assert m["bind/voices/chance@1"] == pytest.approx(1 / 31)
    logged = (result.run_dir / "metrics.jsonl").read_text()
    assert '"image-audio"' in logged and '"image-lineart"' in logged, "both objectives trained"
    weights = load_file(str(result.run_dir / "model.safetensors"))
    assert any(k.startswith("encoders.audio.") for k in weights)


def test_resume_after_a_kill_gives_bit_identical_weights(spec):
    reference = train(spec("full"), log=lambda m: None)

    def kill(trainer, step):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        train(spec("killed"), callbacks=[kill], log=lambda m: None)
    resumed = train(resume=reference.run_dir.parent / "killed", log=lambda m: None)
    assert resumed.steps == reference.steps
    a = load_file(str(reference.run_dir / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
