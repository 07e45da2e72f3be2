"""A tiny in-process plugin of images for tests (``squares``): 8 px colour squares and a mean-colour image tower.

* ``squares.images`` (dataset): noisy squares of four colours, each captioned ``"<colour> square"`` and labelled by
  colour; a ``"train"`` split of ``size`` and a ``"heldout"`` split of ``heldout`` examples (0: none);
* ``squares.pixels`` (encoder, modality ``image``): the mean colour of a 4 x 4 thumbnail, minus ``center``, through
  a linear map to ``embed_dim``.

With ``toy.chars`` (text) or ``toy.char-decoder`` (captions) of :mod:`cl_core.testing.toy` it makes runs that train
in seconds on real image files: what the tests of ``cl caption``, ``cl embed`` / ``cl search`` and ``cl serve`` use.
:func:`square` and :func:`write_squares` make image files of the same kind. Importing this module imports neither
torch nor Pillow (factories and helpers import them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import field, frozen, validators

from ..hookspecs import hookimpl
from ..registry import ComponentInfo

#: the colours of the squares (RGB)
COLOURS = {"red": (230, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 230), "black": (0, 0, 0)}

#: a tiny CLIP over the squares (mean-colour image tower, ``toy.chars`` text tower; needs the ``toy`` plugin too):
#: ``CLIP_SPEC.format(out=runs_folder, name=run_name)``, trains in seconds
CLIP_SPEC = """
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "{name}"
[data]
type = "squares.images"
heldout = 0
[sampler]
type = "core.in-batch"
batch_size = 16
[encoders.image]
type = "squares.pixels"
center = 0.4
[encoders.text]
type = "toy.chars"
embed_dim = 8
[scorer]
type = "core.cosine"
temperature = 0.1
learn_temperature = false
[loss]
type = "core.clip"
[trainer]
epochs = 20
lr = 0.05
progress = false
plots = false
"""


@frozen(kw_only=True)
class SquaresParams:
    """``squares.images``: 8 px colour squares (with noise) captioned "<colour> square".

    Attributes:
        size: training examples.
        heldout: examples of the ``"heldout"`` split (0: no such split).
    """

    size: int = field(default=64, validator=validators.gt(0))
    heldout: int = field(default=8, validator=validators.ge(0))


@frozen(kw_only=True)
class PixelsParams:
    """``squares.pixels``: an image encoder: the mean colour of a 4 x 4 thumbnail, minus ``center``, then a linear map.

    Attributes:
        embed_dim: output width.
        center: subtracted from each mean colour channel (in [0, 1]) before the map.
    """

    embed_dim: int = field(default=8, validator=validators.gt(0))
    center: float = 0.0


def square(colour: str, rng: Any) -> Any:
    """An 8 px PIL image of ``colour`` with Gaussian noise (std 8 levels) drawn from ``rng`` (a numpy Generator)."""
    import numpy as np
    from PIL import Image

    pixels = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 8, (8, 8, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_squares(folder: Path, per_colour: int = 3, *, seed: int = 1) -> Path:
    """``per_colour`` PNG squares of each colour in ``folder``, every other one in a subfolder ``more/``, and a text
    file ``notes.txt`` (not an image); returns ``folder``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    (folder / "more").mkdir(parents=True)
    for colour in COLOURS:
        for j in range(per_colour):
            square(colour, rng).save((folder / "more" if j % 2 else folder) / f"{colour}-{j}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def build_squares(params: SquaresParams, ctx: Any) -> Any:
    import numpy as np

    from ..components import Dataset, DataSource

    names = sorted(COLOURS)
    rng = np.random.default_rng(0)

    class Source(DataSource):
        fields = ("image", "text")

        def __init__(self, n: int) -> None:
            self.labels = np.arange(n, dtype=np.int64) % len(names)
            self.class_names = [f"{c} square" for c in names]
            self.images = [square(names[label], rng) for label in self.labels]

        def __len__(self) -> int:
            return len(self.labels)

        def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
            return {"image": [self.images[i] for i in indices],
                    "text": [self.class_names[self.labels[i]] for i in indices]}

    class Squares(Dataset):
        def __init__(self) -> None:
            self._splits = {"train": Source(params.size)}
            if params.heldout:
                self._splits["heldout"] = Source(params.heldout)

        def splits(self) -> Mapping[str, DataSource]:
            return self._splits

    return Squares()


def build_pixels(params: PixelsParams, ctx: Any) -> Any:
    from .toy_modules import Pixels

    return Pixels(params.embed_dim, params.center)


@hookimpl
def cl_datasets():
    yield ComponentInfo(name="squares.images", params=SquaresParams, factory=build_squares,
                        summary="Colour squares captioned by colour.")


@hookimpl
def cl_encoders():
    yield ComponentInfo(name="squares.pixels", params=PixelsParams, factory=build_pixels,
                        summary="Mean colour, then a linear map.")


def plugin_host() -> Any:
    """A plugin host with the ``toy`` plugin and this one (``squares``), nothing installed."""
    from ..plugins import PluginHost
    from . import squares, toy

    host = PluginHost(autoload=False)
    host.register(toy, name="toy")
    host.register(squares, name="squares")
    return host


def train_run(spec: str, folder: Path, host: Any, name: str = "squares") -> Path:
    """Train ``spec`` (a spec text with ``{out}`` and ``{name}`` fields, as :data:`CLIP_SPEC`) in ``folder`` with
    ``host``, quietly; returns the run directory ``folder / "runs" / name``."""
    from ..runs import train

    path = folder / f"{name}.toml"
    path.write_text(spec.format(out=folder / "runs", name=name))
    train(path, host=host, log=lambda m: None)
    return folder / "runs" / name
