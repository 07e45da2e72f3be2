"""EvaluatorContract on the first-party evaluators (clip.zero-shot, clip.retrieval) with a tiny CLIP
pipeline on the committed emoji fixture; skipped when cl-clip or cl-datasets is not installed."""

from __future__ import annotations

import pytest

pytest.importorskip("cl_clip")
pytest.importorskip("cl_datasets")

import tomli_w  # noqa: E402

from cl_core.build import build_pipeline  # noqa: E402
from cl_core.plugins import PluginHost  # noqa: E402
from cl_core.spec import loads_spec  # noqa: E402
from cl_core.testing import EvaluatorContract  # noqa: E402
from cl_datasets.testing import emoji_fixture_table  # noqa: E402


@pytest.fixture(scope="module")
def tiny_clip():
    spec = {
        "data": emoji_fixture_table(image_size=16, holdout=0.3),
        "sampler": {"type": "core.in-batch", "batch_size": 8},
        "encoders": {"image": {"type": "clip.vit", "image_size": 16, "patch": 8, "width": 32, "layers": 1,
                               "embed_dim": 16},
                     "text": {"type": "clip.text-transformer", "context_length": 12, "width": 32, "layers": 1,
                              "embed_dim": 16}},
        "scorer": {"type": "core.cosine"},
        "loss": {"type": "core.clip"},
    }
    registry = PluginHost(only=["clip", "datasets"], strict=True).registry()
    return build_pipeline(loads_spec(tomli_w.dumps(spec), registry), registry)


class _TinyClip:
    @pytest.fixture
    def pipeline(self, tiny_clip):
        return tiny_clip


class TestZeroShot(_TinyClip, EvaluatorContract):
    name = "clip.zero-shot"

    @pytest.fixture
    def params(self):
        from cl_clip.params import ZeroShotParams

        return ZeroShotParams(examples=2)


class TestRetrieval(_TinyClip, EvaluatorContract):
    name = "clip.retrieval"
