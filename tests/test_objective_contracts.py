"""The contract kit on the objectives (core.contrastive, core.caption) and on core.from-run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cl_core._builtin.composition_params import CaptionObjectiveParams, ContrastiveObjectiveParams, FromRunParams
from cl_core.build import BuildContext
from cl_core.components import EncodedBatch
from cl_core.plugins import PluginHost
from cl_core.spec.model import LossRef
from cl_core.testing import EncoderContract, ObjectiveContract, toy
from cl_core.types import Batch, EncoderOutput


def _host() -> PluginHost:
    host = PluginHost(autoload=False, strict=True)
    host.register(toy, name="toy")
    return host


def _linear(**kw):
    return toy.build_linear(toy.ToyLinearParams(**kw), None)


def _outputs(rows: int = 6, width: int = 4) -> dict[str, EncoderOutput]:
    g = torch.Generator().manual_seed(0)
    return {role: EncoderOutput(torch.randn(rows, width, generator=g).requires_grad_(True),
                                tokens=torch.randn(rows, 3, width, generator=g).requires_grad_(True))
            for role in ("a", "b")}


class TestContrastive(ObjectiveContract):
    name = "core.contrastive"

    @pytest.fixture
    def params(self):
        return ContrastiveObjectiveParams(roles=("a", "b"), loss=LossRef(type="core.clip", params=_clip_params()))

    @pytest.fixture
    def build_context(self, host):
        return BuildContext(encoders={"a": _linear(), "b": _linear()}, registry=host.registry())

    @pytest.fixture
    def encoded_batch(self):
        return EncodedBatch(_outputs())

    def test_owns_its_own_loss_and_scorer_tables(self, component):
        assert {name for name, _ in component.named_children()} == {"loss", "scorer"}
        assert component.pair == ("a", "b") and component.name == "a-b"


def _clip_params():
    from cl_core._builtin.params import ClipLossParams

    return ClipLossParams()


class TestCaption(ObjectiveContract):
    name = "core.caption"

    @pytest.fixture
    def host(self):
        return _host()

    @pytest.fixture
    def params(self):
        return CaptionObjectiveParams(condition="a", target="text")

    @pytest.fixture
    def decoder(self):
        torch.manual_seed(0)
        return toy.build_char_decoder(toy.ToyCharDecoderParams(), None)

    @pytest.fixture
    def build_context(self, host, decoder):
        return BuildContext(encoders={"a": _linear()}, decoder=decoder, registry=host.registry())

    @pytest.fixture
    def encoded_batch(self, component):
        texts = ["class 1", "class 22", "a red heart", "x", "class 3", "dog"]
        return EncodedBatch(_outputs(), own=component.prepare(self._batch(texts)))

    @pytest.fixture
    def batch(self):
        return self._batch(["class 1", "class 2"])

    @staticmethod
    def _batch(texts):
        return Batch(inputs={"text": texts}, labels=None, indices=torch.arange(len(texts)))

    def test_refers_to_the_decoder_without_owning_it(self, component, decoder):
        assert component.decoder is decoder and not list(component.parameters())
        assert component.input_roles == ("text",) and component.roles == ("a",)


class TestFromRun(EncoderContract):
    """A frozen tower taken from a saved run (a toy run trained in a temporary folder)."""

    name = "core.from-run"
    frozen = True

    @pytest.fixture
    def host(self):
        return _host()

    @pytest.fixture
    def params(self, toy_spec):
        from cl_core.runs import train

        path, out = toy_spec(epochs=1, name="base")
        train(path, host=_host(), log=lambda m: None)
        return FromRunParams(source=str(out / "base"), role="a")

    @pytest.fixture
    def build_context(self, host):
        return BuildContext(registry=host.registry(), path="encoders.a", role="a")

    @pytest.fixture
    def items(self):
        return [np.full(8, i, dtype="float32") for i in range(3)]

    def test_is_frozen_and_pins_the_source_table(self, host, params):
        from cl_core._builtin.from_run import build_from_run

        ctx = BuildContext(registry=host.registry(), path="encoders.a", role="a")

        tower = build_from_run(params, ctx)
        assert not any(p.requires_grad for p in tower.parameters())
        pinned = ctx.pinned["encoders.a"]
        assert pinned.encoder.type == "toy.linear" and pinned.role == "a"
