"""The contract kit on the in-process toy plugin: dataset, evaluator and decoder contracts, and strict expected
failures."""

from __future__ import annotations

import textwrap

import pytest

from cl_core.build import build_pipeline
from cl_core.plugins import PluginHost
from cl_core.spec import loads_spec
from cl_core.testing import DatasetContract, DecoderContract, EncoderContract, EvaluatorContract
from cl_core.testing import toy

SPEC = """
[data]
type = "toy.pairs"
size = 32
[sampler]
type = "core.in-batch"
batch_size = 8
[encoders.a]
type = "toy.linear"
[encoders.b]
type = "toy.linear"
[scorer]
type = "core.cosine"
[loss]
type = "core.clip"
"""


class _Toy:
    @pytest.fixture
    def host(self):
        host = PluginHost(autoload=False, strict=True)
        host.register(toy, name="toy")
        return host


class TestToyLinear(_Toy, EncoderContract):
    name = "toy.linear"

    @pytest.fixture
    def items(self):
        import numpy as np

        return [np.full(8, i, dtype="float32") for i in range(3)]


class TestToyAlignment(_Toy, EvaluatorContract):
    name = "toy.alignment"

    @pytest.fixture
    def pipeline(self, host):
        registry = host.registry()
        return build_pipeline(loads_spec(SPEC, registry), registry)


class TestToyBound(_Toy, DatasetContract):
    """A grouped dataset (two pair types, each batch carrying its own two views): asked one group at a time."""

    name = "toy.bound"


class TestToyClassNames(_Toy, DecoderContract):
    name = "toy.class-names"


class TestToyClassNamesTooLong(_Toy, DecoderContract):
    """A deliberately wrong length unit: every decoded string counts as 3 long, so the max_length check
    fails; listed as an expected failure, which runs as a strict xfail."""

    name = "toy.class-names"
    expected_failures = {"test_max_length_is_respected": "this test's length unit is wrong on purpose"}

    def length(self, text: str) -> int:
        return 3


def test_strict_expected_failure_reports_a_fix(pytester):
    """An expected failure that passes fails the run (strict xfail), so fixes are noticed."""
    pytester.makepyfile(test_fixed=textwrap.dedent("""
        import pytest
        from cl_core.plugins import PluginHost
        from cl_core.testing import DecoderContract, toy

        class TestFixed(DecoderContract):
            name = "toy.class-names"
            expected_failures = {"test_one_string_per_embedding": "was broken once"}

            @pytest.fixture
            def host(self):
                host = PluginHost(autoload=False, strict=True)
                host.register(toy, name="toy")
                return host
        """))
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-k", "one_string")
    result.assert_outcomes(failed=1)
    assert "XPASS(strict)" in result.stdout.str()


class TestToyChars(_Toy, EncoderContract):
    name = "toy.chars"

    @pytest.fixture
    def items(self):
        return ["class 1", "a red heart", ""]


class TestToyLinearWithTokens(_Toy, EncoderContract):
    name = "toy.linear"

    @pytest.fixture
    def params(self):
        return toy.ToyLinearParams(tokens=3)

    @pytest.fixture
    def items(self):
        import numpy as np

        return [np.full(8, i, dtype="float32") for i in range(3)]

    def test_token_states_come_from_the_same_pass(self, component, items):
        out = component.encode_states(component.prepare(items))
        assert out.tokens.shape == (3, 3, 4)
        assert (out.embedding == component.encode(component.prepare(items))).all()


class TestToyCharDecoder(_Toy, DecoderContract):
    """A trainable decoder: the contract also trains it on a fixed batch of captions."""

    name = "toy.char-decoder"

    def length(self, text: str) -> int:
        return len(text)  # max_length counts characters


class TestToyCharDecoderOnTokens(_Toy, DecoderContract):
    name = "toy.char-decoder"

    @pytest.fixture
    def params(self):
        return toy.ToyCharDecoderParams(reads_tokens=True)

    def length(self, text: str) -> int:
        return len(text)
