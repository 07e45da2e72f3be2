"""A tiny in-process plugin (entry-point name ``toy``) for tests and examples: a synthetic paired
dataset, a linear encoder, an alignment evaluator and a nearest-class decoder. Register it on a host with
``host.register(toy, name="toy")``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrs import field, frozen, validators

from ..plugins import hookimpl
from ..registry import ComponentInfo


@frozen(kw_only=True)
class ToyPairsParams:
    """``toy.pairs``: two noisy views ``a``, ``b`` of ``classes`` random centres.

    Attributes:
        size: training examples.
        dim: width of each view.
        classes: number of centres (labels).
        noise: standard deviation of the view noise.
        seed: generator seed of the data.
    """

    size: int = field(default=64, validator=validators.gt(0))
    dim: int = field(default=8, validator=validators.gt(0))
    classes: int = field(default=16, validator=validators.gt(0))
    noise: float = field(default=0.1, validator=validators.ge(0))
    seed: int = 0


@frozen(kw_only=True)
class ToyLinearParams:
    """``toy.linear``: a linear map of float vectors.

    Attributes:
        in_dim: input width.
        embed_dim: output width.
    """

    in_dim: int = field(default=8, validator=validators.gt(0))
    embed_dim: int = field(default=4, validator=validators.gt(0))


@frozen(kw_only=True)
class ToyAlignmentParams:
    """``toy.alignment``: how well row i of one role retrieves row i of the other on evaluation splits.

    Attributes:
        splits: evaluation splits to measure (those the dataset does not have are skipped).
    """

    splits: tuple[str, ...] = ("heldout",)


@frozen(kw_only=True)
class ToyClassDecoderParams:
    """``toy.class-names``: decodes an embedding to the name of its nearest learned class prototype.

    Attributes:
        embed_dim: width of the embeddings it decodes.
        classes: number of class prototypes (named ``class 0``, ``class 1``, ...).
    """

    embed_dim: int = field(default=4, validator=validators.gt(0))
    classes: int = field(default=16, validator=validators.gt(0))


def build_pairs(params: ToyPairsParams, ctx: Any):
    import numpy as np

    from ..components import Dataset, DataSource

    rng = np.random.default_rng(params.seed)
    centres = rng.normal(size=(params.classes, params.dim)).astype("float32")

    def make(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        labels = rng.integers(0, params.classes, size=n)
        a = centres[labels] + params.noise * rng.normal(size=(n, params.dim)).astype("float32")
        b = centres[labels] + params.noise * rng.normal(size=(n, params.dim)).astype("float32")
        return a, b, labels.astype("int64")

    class Source(DataSource):
        fields = ("a", "b")

        def __init__(self, a: np.ndarray, b: np.ndarray, labels: np.ndarray):
            self.a, self.b, self.labels = a, b, labels
            self.class_names = [f"class {i}" for i in range(params.classes)]

        def __len__(self) -> int:
            return len(self.a)

        def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
            return {"a": [self.a[i] for i in indices], "b": [self.b[i] for i in indices]}

    class Pairs(Dataset):
        def __init__(self) -> None:
            self._splits = {"train": Source(*make(params.size)), "heldout": Source(*make(max(8, params.size // 4)))}

        def splits(self) -> Mapping[str, DataSource]:
            return self._splits

    return Pairs()


def build_linear(params: ToyLinearParams, ctx: Any):
    import numpy as np
    import torch

    from ..components import Encoder

    class Linear(Encoder):
        modality = "vector"

        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(params.in_dim, params.embed_dim)

        @property
        def embed_dim(self) -> int:
            return params.embed_dim

        def prepare(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
            if len(items) == 0:
                return {"x": torch.empty(0, params.in_dim)}
            return {"x": torch.as_tensor(np.stack(items), dtype=torch.float32)}

        def _encode(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
            return self.proj(inputs["x"])

    return Linear()


def build_alignment(params: ToyAlignmentParams, ctx: Any):
    import torch

    from ..components import Evaluator

    class Alignment(Evaluator):
        def evaluate(self, pipeline: Any, dataset: Any, ctx: Any) -> dict[str, float]:
            q_role, k_role = pipeline.roles
            out: dict[str, float] = {}
            for split in params.splits:
                source = dataset.splits().get(split)
                if source is None:
                    continue
                items = source.get(list(range(len(source))))
                q = pipeline.embed(q_role, items[q_role], batch_size=ctx.batch_size)
                k = pipeline.embed(k_role, items[k_role], batch_size=ctx.batch_size)
                with torch.no_grad():
                    scores = pipeline.scorer.score(q, k).float().cpu()
                hits = scores.argmax(1) == torch.arange(len(q))
                out[f"alignment/{split}/recall@1"] = float(hits.float().mean())
                out[f"alignment/{split}/positive-score"] = float(scores.diagonal().mean())
            return out

    return Alignment()


def build_class_decoder(params: ToyClassDecoderParams, ctx: Any):
    import torch

    from ..components import Decoder

    class ClassNames(Decoder):
        def __init__(self) -> None:
            super().__init__()
            self.prototypes = torch.nn.Parameter(torch.randn(params.classes, params.embed_dim))

        def _decode(self, embeddings: torch.Tensor, *, max_length: int) -> list[str]:
            nearest = (embeddings @ self.prototypes.t()).argmax(1).tolist()
            return [" ".join(f"class {i}".split()[:max_length]) for i in nearest]

    return ClassNames()


@hookimpl
def cl_evaluators():
    yield ComponentInfo(name="toy.alignment", params=ToyAlignmentParams, factory=build_alignment,
                        summary="Recall@1 of row-to-row retrieval and the mean positive score per split.")


@hookimpl
def cl_decoders():
    yield ComponentInfo(name="toy.class-names", params=ToyClassDecoderParams, factory=build_class_decoder,
                        summary="Name of the nearest learned class prototype.")


@hookimpl
def cl_datasets():
    yield ComponentInfo(name="toy.pairs", params=ToyPairsParams, factory=build_pairs,
                        summary="Synthetic paired vectors around random centres.")


@hookimpl
def cl_encoders():
    yield ComponentInfo(name="toy.linear", params=ToyLinearParams, factory=build_linear,
                        summary="A linear map of float vectors.")
