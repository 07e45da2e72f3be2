"""A tiny in-process plugin (entry-point name ``toy``) for tests and examples: synthetic paired datasets
(two views, or an anchor bound to two other views in separate pair types), a linear encoder (optionally
with token states), a character text encoder, an alignment evaluator, a nearest-class decoder and a small
trainable character decoder. Register it on a host with ``host.register(toy, name="toy")``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrs import field, frozen, validators

from ..hookspecs import hookimpl
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
    #: also give each example a ``text`` field: its class name (``"class 3"``), a caption to decode
    captions: bool = False


@frozen(kw_only=True)
class ToyBoundParams:
    """``toy.bound``: an anchor view ``a`` bound to two other views in separate pair types, as ImageBind binds
    audio and line art to images: group ``a-b`` has fields ``a``, ``b``; group ``a-c`` has ``a``, ``c`` (no
    example has ``b`` and ``c``). Views are noisy copies of ``classes`` random centres; ``c`` is a fixed random
    rotation of them, so it must be learned, not copied.
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
        tokens: also return this many token states ``[B, tokens, embed_dim]`` (another linear map of the
            input; their mean is added to the embedding), for objectives that cross-attend; 0 = none.
    """

    in_dim: int = field(default=8, validator=validators.gt(0))
    embed_dim: int = field(default=4, validator=validators.gt(0))
    tokens: int = field(default=0, validator=validators.ge(0))


@frozen(kw_only=True)
class ToyCharsParams:
    """``toy.chars``: a text encoder: the mean of learned character embeddings, then a linear map.

    Attributes:
        embed_dim: output width.
    """

    embed_dim: int = field(default=4, validator=validators.gt(0))


@frozen(kw_only=True)
class ToyCharDecoderParams:
    """``toy.char-decoder``: a trainable character GRU decoder, conditioned on an embedding (a linear map of it
    is added to every input step, as a prefix would be attended to) or, with ``reads_tokens``, on the mean of
    the conditioning role's token states; trained by ``core.caption`` with teacher forcing, decoded greedily.

    Attributes:
        embed_dim: width of the embeddings (or token states) it conditions on.
        hidden: GRU width.
        reads_tokens: condition on token states instead of the embedding.
    """

    embed_dim: int = field(default=4, validator=validators.gt(0))
    hidden: int = field(default=32, validator=validators.gt(0))
    reads_tokens: bool = False


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
        fields = ("a", "b", "text") if params.captions else ("a", "b")

        def __init__(self, a: np.ndarray, b: np.ndarray, labels: np.ndarray):
            self.a, self.b, self.labels = a, b, labels
            self.class_names = [f"class {i}" for i in range(params.classes)]

        def __len__(self) -> int:
            return len(self.a)

        def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
            out = {"a": [self.a[i] for i in indices], "b": [self.b[i] for i in indices]}
            if params.captions:
                out["text"] = [self.class_names[int(self.labels[i])] for i in indices]
            return out

    class Pairs(Dataset):
        def __init__(self) -> None:
            self._splits = {"train": Source(*make(params.size)), "heldout": Source(*make(max(8, params.size // 4)))}

        def splits(self) -> Mapping[str, DataSource]:
            return self._splits

    return Pairs()


def build_bound(params: ToyBoundParams, ctx: Any):
    import numpy as np

    from ..components import Dataset, DataSource

    rng = np.random.default_rng(params.seed)
    centres = rng.normal(size=(params.classes, params.dim)).astype("float32")
    rotation = np.linalg.qr(rng.normal(size=(params.dim, params.dim)))[0].astype("float32")

    def view(labels: np.ndarray) -> np.ndarray:
        return centres[labels] + params.noise * rng.normal(size=(len(labels), params.dim)).astype("float32")

    class Source(DataSource):
        fields = ("a", "b", "c")
        group_names = ("a-b", "a-c")

        def __init__(self, n: int):
            self.labels = rng.integers(0, params.classes, size=n).astype("int64")
            self.groups = (np.arange(n) % 2).astype("int64")  # even rows pair a with b, odd rows a with c
            self.a, self.b, self.c = view(self.labels), view(self.labels), view(self.labels) @ rotation
            self.class_names = [f"class {i}" for i in range(params.classes)]

        def __len__(self) -> int:
            return len(self.labels)

        def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
            kinds = {int(self.groups[i]) for i in indices}
            other = {0: "b", 1: "c"}
            out: dict[str, list[Any]] = {"a": [self.a[i] for i in indices]}
            for kind in kinds:  # a batch within one group carries one pair type
                out[other[kind]] = [getattr(self, other[kind])[i] for i in indices]
            return out

    class Bound(Dataset):
        def __init__(self) -> None:
            self._splits = {"train": Source(params.size), "heldout": Source(max(8, params.size // 4))}

        def splits(self) -> Mapping[str, DataSource]:
            return self._splits

    return Bound()


#: The characters the toy text components know; index 0 pads, 1 starts and 2 ends a caption.
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 "
PAD, BOS, EOS = 0, 1, 2


def build_linear(params: ToyLinearParams, ctx: Any):
    from .toy_modules import Linear, TokenLinear

    return (TokenLinear if params.tokens else Linear)(params.in_dim, params.embed_dim, params.tokens)


def build_chars(params: ToyCharsParams, ctx: Any):
    from .toy_modules import Chars

    return Chars(params.embed_dim)


def build_char_decoder(params: ToyCharDecoderParams, ctx: Any):
    from .toy_modules import CharDecoder, TokenCharDecoder

    return (TokenCharDecoder if params.reads_tokens else CharDecoder)(params.embed_dim, params.hidden)


def build_alignment(params: ToyAlignmentParams, ctx: Any):
    import torch

    from ..components import Evaluator

    class Alignment(Evaluator):
        def evaluate(self, pipeline: Any, dataset: Any, ctx: Any) -> dict[str, float]:
            q_role, k_role = pipeline.pair_roles
            scorer = pipeline.scorer_for(q_role, k_role)
            out: dict[str, float] = {}
            for split in params.splits:
                source = dataset.splits().get(split)
                if source is None:
                    continue
                items = source.get(list(range(len(source))))
                q = pipeline.embed(q_role, items[q_role], batch_size=ctx.batch_size)
                k = pipeline.embed(k_role, items[k_role], batch_size=ctx.batch_size)
                with torch.no_grad():
                    scores = scorer.score(q, k).float().cpu()
                hits = scores.argmax(1) == torch.arange(len(q))
                out[f"alignment/{split}/recall@1"] = float(hits.float().mean())
                out[f"alignment/{split}/positive-score"] = float(scores.diagonal().mean())
            return out

    return Alignment()


def build_class_decoder(params: ToyClassDecoderParams, ctx: Any):
    from .toy_modules import ClassNames

    return ClassNames(params.classes, params.embed_dim)


@hookimpl
def cl_evaluators():
    yield ComponentInfo(name="toy.alignment", params=ToyAlignmentParams, factory=build_alignment,
                        summary="Recall@1 of row-to-row retrieval and the mean positive score per split.")


@hookimpl
def cl_decoders():
    yield ComponentInfo(name="toy.class-names", params=ToyClassDecoderParams, factory=build_class_decoder,
                        summary="Name of the nearest learned class prototype.")
    yield ComponentInfo(name="toy.char-decoder", params=ToyCharDecoderParams, factory=build_char_decoder,
                        summary="A trainable character GRU decoder (teacher-forced caption loss, greedy decoding).")


@hookimpl
def cl_datasets():
    yield ComponentInfo(name="toy.pairs", params=ToyPairsParams, factory=build_pairs,
                        summary="Synthetic paired vectors around random centres.")
    yield ComponentInfo(name="toy.bound", params=ToyBoundParams, factory=build_bound,
                        summary="An anchor view bound to two other views in separate pair types.")


@hookimpl
def cl_encoders():
    yield ComponentInfo(name="toy.linear", params=ToyLinearParams, factory=build_linear,
                        summary="A linear map of float vectors.")
    yield ComponentInfo(name="toy.chars", params=ToyCharsParams, factory=build_chars,
                        summary="Mean of learned character embeddings, then a linear map.")
