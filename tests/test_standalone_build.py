"""``cl_core.standalone.build``: one component by hand, its parameters checked as a spec table's."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cl_core.errors import SpecError
from cl_core.plugins import PluginHost
from cl_core.standalone import build
from cl_core.types import Targets


@pytest.fixture(scope="module")
def registry():
    return PluginHost(only=["core"]).registry()


def _lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def test_a_scorer_and_a_loss_built_by_hand_compute_clip(registry):
    scorer = build("scorer", "core.cosine", temperature=0.05, learn_temperature=False, registry=registry)
    loss = build("loss", "core.clip", registry=registry)
    assert not scorer.logit_scale.requires_grad and scorer.scale.item() == pytest.approx(20.0, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    scorer = scorer.double()
    s = [[20.0 * float(torch.nn.functional.cosine_similarity(q[i], k[j], dim=0)) for j in range(4)] for i in range(4)]
    rows = sum(_lse(s[i]) - s[i][i] for i in range(4)) / 4
    cols = sum(_lse([s[i][j] for i in range(4)]) - s[j][j] for j in range(4)) / 4
    value = loss.compute(q, k, scorer, Targets(positive=torch.arange(4))).value.item()
    assert value == pytest.approx((rows + cols) / 2, rel=1e-12)


def test_defaults_fill_unset_parameters_and_ints_pass_as_floats(registry):
    scorer = build("scorer", "core.cosine", registry=registry)  # CLIP: 1/0.07, learnable
    assert scorer.logit_scale.requires_grad and scorer.scale.item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert build("scorer", "core.dot", temperature=1, registry=registry).scale.item() == 1.0
    triplet = build("loss", "core.triplet", margin=1, mining="all", registry=registry)
    assert (triplet.margin, triplet.mining) == (1.0, "all")


def test_the_default_registry_is_the_installed_plugins():
    assert type(build("loss", "core.info-nce", symmetric=True)).__name__ == "InfoNCELoss"


def test_tuples_and_paths_pass_as_toml_arrays_and_strings(registry):
    from cl_core.standalone import _plain

    assert _plain({"a": (1, (2, 3)), "p": Path("x") / "y"}) == {"a": [1, [2, 3]], "p": str(Path("x") / "y")}


def test_an_unknown_parameter_is_a_located_spec_error_with_did_you_mean(registry):
    with pytest.raises(SpecError) as info:
        build("scorer", "core.cosine", temperatur=0.05, registry=registry)
    (problem,) = info.value.problems
    assert problem.path == "scorer.temperatur"
    assert "did you mean 'temperature'" in problem.message
    assert any("parameters:" in hint and "max_logit_scale" in hint for hint in problem.hints)
    assert "build('scorer', 'core.cosine')" in str(info.value)


def test_every_problem_at_once_each_located(registry):
    with pytest.raises(SpecError) as info:
        build("loss", "core.triplet", mining="hardest", margin=-1.0, registry=registry)
    found = {p.path: p.message for p in info.value.problems}
    assert set(found) == {"loss.mining", "loss.margin"}
    assert 'did you mean "hard"' in found["loss.mining"] and ">= 0" in found["loss.margin"]


def test_wrong_types_and_cross_field_checks_are_spec_errors(registry):
    with pytest.raises(SpecError, match=r'scorer.temperature: expected number, got string "x"'):
        build("scorer", "core.cosine", temperature="x", registry=registry)
    with pytest.raises(SpecError, match="needs a temperature"):
        build("scorer", "core.dot", learn_temperature=True, registry=registry)


def test_an_unknown_name_suggests_the_registered_ones(registry):
    with pytest.raises(SpecError) as info:
        build("loss", "core.nt-xnet", registry=registry)
    (problem,) = info.value.problems
    assert problem.path == "loss.type" and "core.nt-xent" in problem.message
    assert any("available losses" in hint or "available loss" in hint for hint in problem.hints)


def test_a_bad_kind_or_a_type_parameter_is_refused(registry):
    with pytest.raises(ValueError, match=r"kind must be one of .*'scorer'.*did you mean 'scorer'"):
        build("scorr", "core.cosine", registry=registry)
    with pytest.raises(ValueError, match="kind must be one of"):
        build("trainer", "core.adamw", registry=registry)
    with pytest.raises(SpecError, match=r"loss.type: reserved"):
        build("loss", "core.clip", type="core.clip", registry=registry)


def test_a_factory_error_is_raised_as_it_is(registry):
    """Valid parameters that need the spec's encoders: the factory's own message, naming the parameter."""
    with pytest.raises(ValueError, match=r"scorer.dim"):
        build("scorer", "core.bilinear", registry=registry)
    assert build("scorer", "core.bilinear", dim=4, rank=2, registry=registry).dim == 4
