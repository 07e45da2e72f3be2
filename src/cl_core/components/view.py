"""What the component interfaces see of an assembled pipeline, as a protocol.

:class:`cl_core.pipeline.Pipeline` is built from the components, so the interfaces that take a pipeline (an
evaluator measures one, a training loop trains one) name this protocol instead of importing the pipeline
module: the dependency runs one way, components <- pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor

if TYPE_CHECKING:
    from ..spec import PipelineSpec
    from .data import Dataset
    from .decoder import Decoder
    from .encoder import CandidateSet, Encoder
    from .evaluator import Evaluator
    from .sampler import Sampler
    from .scorer import Scorer


class PipelineView(Protocol):
    """The assembled pipeline as components use it (see :class:`cl_core.pipeline.Pipeline` for each member)."""

    spec: PipelineSpec
    dataset: Dataset | None
    sampler: Sampler | None
    decoder: Decoder | None
    evaluators: list[Evaluator]

    @property
    def encoders(self) -> Mapping[str, Any]: ...

    @property
    def roles(self) -> tuple[str, ...]: ...

    @property
    def pair_roles(self) -> tuple[str, str]: ...

    @property
    def training(self) -> bool: ...

    def encoder(self, role: str) -> Encoder: ...

    def scorer_for(self, query_role: str, candidate_role: str) -> Scorer | None: ...

    def candidate_set(self) -> CandidateSet | None: ...

    def embed(self, role: str, items: Sequence[Any], *, batch_size: int = 256) -> Tensor: ...

    def caption(self, role: str, items: Sequence[Any], *, max_length: int = 32, batch_size: int = 256) -> list[str]: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> Any: ...
