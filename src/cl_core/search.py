"""Searching an indexed corpus with a run's encoders (``cl search``, and the API a web page builds on).

:meth:`Searcher.open` loads a run and an index folder (:mod:`cl_core.index`) and checks that the index was built from
this run's tower: the run must have a tower whose weights digest (:func:`cl_core.captioning.tower_digest`) is the one
the index recorded. Another run holding the identical tower (an ImageBind run bound to the CLIP run whose image tower
it kept frozen) passes; any other run is refused, since its embeddings would land in another space.

A query of any modality the run has an encoder for is embedded, L2-normalised and searched by cosine similarity:
text to images, images to images, audio to images with a bound model. :meth:`Searcher.combine` adds the normalised
embeddings of several parts (an image plus a text, ImageBind's embedding arithmetic), each optionally weighted (a
negative weight subtracts), and searches their re-normalised sum.

:meth:`Searcher.resolve` maps a hit's path to its file and refuses everything else (paths outside the data root,
``..``, symbolic links leading out, paths that are no item of the index): the one door a web server serving
thumbnails goes through.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ClError
from .index import Index


class UnsafePathError(ClError, ValueError):
    """A path :meth:`Searcher.resolve` refuses: outside the data root, or not an item of the index."""


@dataclass(frozen=True)
class Hit:
    """One search result: the item's ``id`` (its position in the embedded corpus), its cosine ``score`` with the
    query (in [-1, 1]) and its ``path`` relative to the data root (what :meth:`Searcher.resolve` takes)."""

    id: int
    score: float
    path: str


class Searcher:
    """A run's encoders over an index of a corpus embedded with one of them. Build with :meth:`open`.

    Attributes:
        pipeline: the run's pipeline (eval mode). index: the opened :class:`~cl_core.index.Index`.
        role: the run's role whose tower embedded the corpus. modality: the corpus's modality.
    """

    def __init__(self, pipeline: Any, index: Index, role: str, query_roles: Mapping[str, str] | None = None) -> None:
        self.pipeline = pipeline
        self.index = index
        self.role = role
        self.modality = str(index.info["modality"])
        self._query_roles = dict(query_roles or {})
        self._known: frozenset[str] | None = None

    @classmethod
    def open(cls, run: str | Path, index_dir: str | Path, *, device: str = "cpu", host: Any = None,
             query_roles: Mapping[str, str] | None = None) -> Searcher:
        """Load ``run`` (a run folder, saved folder, Hub id, or a spec file with nothing to train) on ``device`` and
        the index in ``index_dir``, and check that the index holds embeddings of one of the run's towers.

        Args:
            query_roles: modality -> role, for a run with several encoders of one modality (default: the indexed
                role for the corpus's modality; otherwise as ``cl caption`` chooses a role).

        Raises:
            ClError: the index was built with another model's tower (names both digests), FAISS is missing.
            DataError: ``index_dir`` is not an index. WeightsError / HubError / SpecError: the run does not load.
        """
        from .captioning import caption_pipeline, tower_digest
        from .plugins import default_host

        index = Index.open(index_dir)
        pipeline = caption_pipeline(str(run), device, host or default_host())
        wanted, indexed_role = str(index.info["run_digest"]), str(index.info["role"])
        digests = {role: tower_digest(pipeline.encoder(role)) for role in pipeline.roles}
        matching = [r for r, d in digests.items() if d == wanted]
        if not matching:
            towers = ", ".join(f"{r} {d[:12]}" for r, d in digests.items()) or "none"
            raise ClError(f"{index_dir} holds {index.info['modality']} embeddings of another model's tower "
                          f"({indexed_role} {wanted[:12]} of {index.info['run']}); {run}'s towers: {towers}. Search "
                          f"it with that run, or embed the corpus with this one (`cl embed {run} ...`).")
        role = indexed_role if indexed_role in matching else matching[0]
        return cls(pipeline, index, role, query_roles)

    # -- what the corpus is -------------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The data root: the folder the hits' paths are relative to."""
        return self.index.root

    @property
    def query_modalities(self) -> list[str]:
        """Modalities this searcher can embed queries of (those of the run's encoders, ``any`` excluded)."""
        found = [getattr(self.pipeline.encoder(r), "modality", "any") for r in self.pipeline.roles]
        return sorted({m for m in found if m != "any"} | {self.modality})

    def query_role(self, modality: str) -> str:
        """The role that embeds queries of ``modality``: the one given to :meth:`open`; the indexed role for the
        corpus's own modality; else as ``cl caption`` chooses one.

        Raises:
            ClError: the run has no (single) encoder of that modality.
        """
        from .captioning import caption_role

        if modality in self._query_roles:
            return caption_role(self.pipeline, self._query_roles[modality], modality)
        if modality == self.modality:
            return self.role
        try:
            return caption_role(self.pipeline, None, modality)
        except ClError:
            roles = ", ".join(f"{r} ({getattr(self.pipeline.encoder(r), 'modality', 'any')})"
                              for r in self.pipeline.roles)
            raise ClError(f"the run has no single encoder of {modality} queries; its roles (modality): {roles}") \
                from None

    # -- queries ------------------------------------------------------------------------------------------------

    def embed(self, modality: str, item: Any) -> np.ndarray:
        """The L2-normalised embedding ``[dim]`` float32 of one query item: ``text`` a string, ``image`` a PIL
        image or an image file's path, ``audio`` a WAV file's path; another modality the item its encoder takes.

        Raises:
            ClError: no encoder of ``modality``, an unreadable file (named), an item of the wrong type, or an
                embedding of another width than the index's.
        """
        from .embedding import read_corpus_item

        role = self.query_role(modality)
        if modality == "text":
            if not isinstance(item, str) or not item.strip():
                raise ClError(f"a text query must be a non-empty string, not {item!r}")
        elif modality in ("image", "audio") and isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if not path.is_file():
                raise ClError(f"{path}: no such file")
            item = read_corpus_item(self.pipeline, role, modality, path)
        elif modality == "image" and hasattr(item, "convert"):
            item = item.convert("RGB")
        vector = self.pipeline.embed(role, [item], batch_size=1)[0].float().cpu().numpy()
        if vector.shape != (self.index.dim,):
            raise ClError(f"the {role!r} tower embeds {modality} queries in {vector.shape[0]} dimensions; the index "
                          f"holds {self.index.dim}-d embeddings")
        return _normalised(vector)

    def query(self, text: str | None = None, image: Any = None, audio: Any = None, k: int = 10) -> list[Hit]:
        """The ``k`` items nearest to a query (best first). Give one of ``text`` (a string), ``image`` (a PIL image
        or a path) or ``audio`` (a WAV path); given several, their normalised embeddings are added
        (:meth:`combine`).

        Raises:
            ClError: no query given, or one :meth:`embed` refuses. ValueError: ``k`` < 1.
        """
        parts = [(m, v) for m, v in (("text", text), ("image", image), ("audio", audio)) if v is not None]
        if not parts:
            raise ClError("give a query: text, image or audio")
        if len(parts) == 1:
            return self.query_embedding(self.embed(*parts[0]), k)
        return self.combine(parts, k)

    def query_embedding(self, vec: Any, k: int = 10) -> list[Hit]:
        """The ``k`` items nearest to an embedding ``vec`` (``[dim]`` array or tensor; normalised here), best first;
        fewer when the index holds fewer.

        Raises:
            ValueError: a vector of another width than the index's, ``k`` < 1.
        """
        scores, ids = self.index.search(np.asarray(_numpy(vec), dtype=np.float32).reshape(1, -1), k)
        return [Hit(id=int(i), score=float(s), path=self.index.path(int(i)))
                for s, i in zip(scores[0], ids[0]) if i >= 0]

    def combine(self, parts: Sequence[Any], k: int = 10) -> list[Hit]:
        """Search the sum of several queries' normalised embeddings, re-normalised (embedding arithmetic).

        Args:
            parts: each ``(modality, item)``, ``(modality, item, weight)`` (weight -1 subtracts), or an embedding
                ``[dim]`` (array or tensor) taken as it is, normalised.

        Raises:
            ClError: no parts, a part :meth:`embed` refuses, or parts that cancel out (a zero sum).
        """
        if not parts:
            raise ClError("combine needs at least one part")
        total = np.zeros(self.index.dim, dtype=np.float32)
        for part in parts:
            if isinstance(part, tuple) and part and isinstance(part[0], str):
                if len(part) not in (2, 3):
                    raise ClError(f"a part is (modality, item) or (modality, item, weight), not {len(part)} values")
                weight = float(part[2]) if len(part) == 3 else 1.0
                total += weight * self.embed(part[0], part[1])
            else:
                vector = np.asarray(_numpy(part), dtype=np.float32).reshape(-1)
                if vector.shape != (self.index.dim,):
                    raise ClError(f"an embedding part of shape {vector.shape}: the index holds {self.index.dim}-d ones")
                total += _normalised(vector)
        if not np.linalg.norm(total) > 1e-6:
            raise ClError("the parts cancel out: their embeddings sum to zero")
        return self.query_embedding(_normalised(total), k)

    # -- files --------------------------------------------------------------------------------------------------

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """The absolute file of an indexed item, from its path relative to the data root (a :class:`Hit`'s
        ``path``) or its absolute path.

        Raises:
            UnsafePathError: the path leads outside the data root (``..``, another absolute path, a symbolic link
                pointing out), or it is no item of the index.
        """
        raw = os.fspath(path)
        if not raw or "\x00" in raw:
            raise UnsafePathError(f"{raw!r}: not a path of this index")
        root = Path(os.path.normpath(self.root.absolute()))
        real_root = root.resolve()
        given = Path(raw)
        candidate = Path(os.path.normpath(given if given.is_absolute() else root / given))
        relative = None
        for base in (root, real_root):
            try:
                relative = candidate.relative_to(base).as_posix()
                break
            except ValueError:
                continue
        if relative is None or relative == "." or relative.startswith("../"):
            raise UnsafePathError(f"{raw}: outside the data root {root}")
        if relative not in self._items():
            raise UnsafePathError(f"{raw}: not an item of the index {self.index.folder}")
        real = (root / relative).resolve()
        if not real.is_relative_to(real_root):
            raise UnsafePathError(f"{raw}: a link leading outside the data root {root}")
        return real

    def _items(self) -> frozenset[str]:
        if self._known is None:
            self._known = frozenset(p for p in self.index.paths if p)
        return self._known


def _numpy(value: Any) -> Any:
    return value.detach().float().cpu().numpy() if hasattr(value, "detach") else value


def _normalised(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)
