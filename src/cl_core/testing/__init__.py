"""The contract kit: conformance tests every registered component must pass.

Subclass the contract of your component's kind, set ``name``, and override the fixtures that make the
component tiny, offline and CPU-only::

    class TestMyEncoder(EncoderContract):
        name = "myplugin.encoder"

        @pytest.fixture
        def params(self):
            return MyEncoderParams(width=8)

        @pytest.fixture
        def items(self):
            return ["a short text", "another one", "a third"]

Known gaps go in ``expected_failures = {"test_name": "reason"}``; they run as strict xfails, so a fix
is noticed. Needs pytest (``pip install cl-core[testing]``).
"""

from .contracts import (
    ComponentContract,
    DatasetContract,
    EncoderContract,
    LossContract,
    SamplerContract,
    ScorerContract,
)

__all__ = [
    "ComponentContract", "DatasetContract", "EncoderContract", "LossContract", "SamplerContract", "ScorerContract",
]
