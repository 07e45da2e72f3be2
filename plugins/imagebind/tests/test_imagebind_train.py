"""ImageBind trained through the core end to end on the emoji fixture with real espeak-ng speech and tiny towers:
two pair types in batches of their own, the cross-modal table, and a resume after a kill that ends with the same
weights bit for bit. The spec is conftest's ``BIND_SPEC``."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from cl_core.api import train

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (apt-get install espeak-ng)")


class Killed(Exception):
    pass


def test_two_pair_types_train_and_the_table_has_every_pair(bind_spec):
    result = train(bind_spec("full"), log=lambda m: None)
    m = result.results
    for pair in ("audio2image", "image2audio", "lineart2image", "audio2lineart", "lineart2audio"):
        assert 0.0 <= m[f"bind/voices/{pair}@1"] <= 1.0
    # 31 training concepts: the 4 OpenMoji-only ones and 27 of the 36 in both styles (holdout 0.25)
    assert m["bind/voices/chance@1"] == pytest.approx(1 / 31)
    logged = (result.run_dir / "metrics.jsonl").read_text()
    assert '"image-audio"' in logged and '"image-lineart"' in logged, "both objectives trained"
    weights = load_file(str(result.run_dir / "model.safetensors"))
    assert any(k.startswith("encoders.audio.") for k in weights)


def test_resume_after_a_kill_gives_bit_identical_weights(bind_spec):
    reference = train(bind_spec("full"), log=lambda m: None)

    def kill(trainer, step):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        train(bind_spec("killed"), callbacks=[kill], log=lambda m: None)
    resumed = train(resume=reference.run_dir.parent / "killed", log=lambda m: None)
    assert resumed.steps == reference.steps
    a = load_file(str(reference.run_dir / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
