"""Registration, torch-free import, params validation and spec structuring of the clip plugin."""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest

from cl_core.plugins import PluginHost
from cl_core.spec import loads_spec
from cl_core.testing import toy
from cl_clip import params as P

ENCODERS = {"clip.vit", "clip.resnet", "clip.efficientnet", "clip.efficientnet-ensemble", "clip.text-transformer", "clip.minilm"}
EVALUATORS = {"clip.zero-shot", "clip.retrieval"}


def test_registered_through_entry_point():
    registry = PluginHost(strict=True).registry()
    assert ENCODERS <= set(registry.names("encoder"))
    assert EVALUATORS <= set(registry.names("evaluator"))
    for name in ENCODERS:
        entry = registry.get("encoder", name)
        assert entry.distribution == "cl-clip"
        assert callable(entry.info.load_factory())


def test_plugin_and_params_import_no_torch():
    code = (
        "import sys, cl_clip.plugin, cl_clip.params\n"
        "from cl_core.plugins import PluginHost\n"
        "PluginHost(strict=True).registry()\n"
        "bad = [m for m in ('torch', 'transformers', 'PIL', 'kornia') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "cls, kwargs, fragment",
    [
        (P.ViTParams, {"image_size": 60, "patch": 8}, "multiple of patch"),
        (P.ViTParams, {"width": 100, "heads": 3}, "must divide"),
        (P.ResNetParams, {"image_size": 48}, "multiple of 32"),
        (P.ResNetParams, {"width": 9}, "even"),
        (P.ResNetParams, {"layers": (1, 0, 1, 1)}, "> 0"),
        (P.ZeroShotParams, {"prompts": ("no placeholder",)}, "{}"),
        (P.ZeroShotParams, {"prompts": ()}, "at least one"),
        (P.ViTParams, {"std": (0.5, 0.0, 0.5)}, "std"),
        (P.RetrievalParams, {"splits": ()}, "at least one"),
    ],
)
def test_params_reject_bad_values(cls, kwargs, fragment):
    with pytest.raises(ValueError, match=None) as info:
        cls(**kwargs)
    assert fragment in str(info.value)


def test_params_documented_and_no_type_field():
    for cls in (P.ViTParams, P.ResNetParams, P.EfficientNetParams, P.EfficientNetTrunk, P.EfficientNetEnsembleParams,
                P.TextTransformerParams, P.MiniLMParams, P.ZeroShotParams, P.RetrievalParams):
        doc = cls.__doc__ or ""
        for field in attrs.fields(cls):
            assert f"{field.name}:" in doc, f"{cls.__name__}.{field.name} is not documented"
        assert "type" not in attrs.fields_dict(cls)


SPEC = """
format = 1
[data]
type = "toy.pairs"
[sampler]
type = "core.in-batch"
batch_size = 8
[encoders.image]
type = "clip.resnet"
layers = [1, 2, 1, 1]
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
[encoders.text]
type = "clip.text-transformer"
width = 64
[scorer]
type = "core.cosine"
[loss]
type = "core.clip"
[[evaluate]]
type = "clip.zero-shot"
prompts = ["an emoji of {}", "a picture of {}"]
splits = ["test"]
[[evaluate]]
type = "clip.retrieval"
ks = [1, 5]
"""


def test_spec_with_clip_components_structures():
    host = PluginHost(strict=True)
    host.register(toy, name="toy")
    spec = loads_spec(SPEC, host.registry())
    image = spec.encoders["image"].params
    assert image.layers == (1, 2, 1, 1) and image.mean == (0.5, 0.5, 0.5)
    assert spec.encoders["text"].params.width == 64
    zs, ret = (ref.params for ref in spec.evaluate)
    assert zs.prompts == ("an emoji of {}", "a picture of {}") and zs.splits == ("test",)
    assert ret.ks == (1, 5) and ret.splits is None


def test_spec_errors_are_located():
    from cl_core.errors import SpecError

    host = PluginHost(strict=True)
    host.register(toy, name="toy")
    bad = SPEC.replace('type = "clip.text-transformer"', 'type = "clip.text-transformer"\nwidht = 3')
    bad = bad.replace("layers = [1, 2, 1, 1]", "layers = [1, 2, 1]")
    with pytest.raises(SpecError) as info:
        loads_spec(bad, host.registry())
    text = str(info.value)
    assert "encoders.text.widht" in text and "did you mean 'width'" in text
    assert "encoders.image.layers" in text
