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

The contracts are imported on first use, so ``cl_core.testing.toy`` (a tiny in-process plugin) and
``cl_core.testing.hub`` (a Hub-compatible test server) import neither pytest nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ComponentContract", "DatasetContract", "DecoderContract", "EncoderContract", "EvaluatorContract",
    "LossContract", "ObjectiveContract", "SamplerContract", "ScorerContract",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".contracts", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
