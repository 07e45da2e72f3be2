"""FAISS indexes over an embedded corpus (``cl index build``): exact (``flat``) or approximate (``ivf``, ``hnsw``)
nearest-neighbour search by cosine similarity.

:func:`~cl_core.embedding.embed_corpus` writes L2-normalised embeddings, so the inner product an index computes is
the cosine. An index folder holds

=================  ======================================================================================
``index.faiss``    the FAISS index; row ``r`` is the ``r``-th embedding in shard order
``ids.npy``        ``[count]`` int64: the item id of each row (the file's position in the corpus listing)
``items.json``     ``{"root": data root, "paths": [relative path of id 0, of id 1, ...]}`` (``null``: skipped)
``index.json``     kind, params, count, dim, the embeddings' run digest and a digest of the embedding files
=================  ======================================================================================

``index.json`` is written last, after the old one is removed, so a folder whose build was interrupted is not taken
for an index. :func:`build_index` does nothing when ``index.json`` already describes the same embeddings (same run
digest, same bytes) and the same kind and parameters: an index is rebuilt only when the model or the data changed.

FAISS (``pip install "cl-core[index]"``, the ``faiss-cpu`` package) is imported on first use; NumPy is all else this
module needs (no torch).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .errors import ClError, DataError

INDEX_NAME = "index.faiss"
IDS_NAME = "ids.npy"
ITEMS_NAME = "items.json"
INFO_NAME = "index.json"
KINDS = ("flat", "ivf", "hnsw")
FORMAT = 1

#: defaults of the approximate indexes: IVF probes ``DEFAULT_NPROBE`` of its lists; HNSW links ``DEFAULT_M``
#: neighbours per node, searches with a beam of ``DEFAULT_EF_SEARCH`` and builds with one of ``DEFAULT_EF_CONSTRUCTION``
DEFAULT_NPROBE = 16
DEFAULT_M = 32
DEFAULT_EF_SEARCH = 64
DEFAULT_EF_CONSTRUCTION = 40
#: IVF's k-means is trained on at most this many points per list (FAISS wants at least 39), sampled without
#: replacement, for ``IVF_NITER`` iterations: enough for the centroids, and 1M vectors train in about a minute on
#: 2 cores (4,000 lists)
IVF_POINTS_PER_LIST = 40
IVF_NITER = 10


def faiss_module() -> Any:
    """The ``faiss`` module.

    Raises:
        ClError: FAISS is not installed (names the extra that installs it).
    """
    try:
        return importlib.import_module("faiss")
    except ImportError:
        raise ClError('cl index and cl search need FAISS: pip install "cl-core[index]"') from None


def default_nlist(count: int) -> int:
    """Inverted lists of an IVF index of ``count`` vectors: about 4 sqrt(count), and at most count / 39 (FAISS's
    minimum of training points per list), at least 1."""
    return max(1, min(round(4 * math.sqrt(count)), count // 39))


def index_params(kind: str, count: int, *, nlist: int | None = None, nprobe: int | None = None, m: int | None = None,
                 ef_search: int | None = None, ef_construction: int | None = None) -> dict[str, int]:
    """The resolved parameters of an index of ``kind`` over ``count`` vectors (defaults filled in; what
    ``index.json`` records and compares).

    Raises:
        ClError: an unknown kind, or a parameter below 1.
    """
    if kind not in KINDS:
        raise ClError(f"--kind {kind}: one of {', '.join(KINDS)}")
    for name, value in (("nlist", nlist), ("nprobe", nprobe), ("m", m), ("ef_search", ef_search),
                        ("ef_construction", ef_construction)):
        if value is not None and value < 1:
            raise ClError(f"{name} = {value}: must be at least 1")
    if kind == "ivf":
        lists = nlist if nlist is not None else default_nlist(count)
        if lists > max(count, 1):
            raise ClError(f"nlist = {lists}: more lists than the {count} vectors to index")
        return {"nlist": lists, "nprobe": min(nprobe or DEFAULT_NPROBE, lists)}
    if kind == "hnsw":
        return {"m": m or DEFAULT_M, "ef_search": ef_search or DEFAULT_EF_SEARCH,
                "ef_construction": ef_construction or DEFAULT_EF_CONSTRUCTION}
    return {}


def new_index(vectors: np.ndarray, kind: str = "flat", params: Mapping[str, int] | None = None, *, seed: int = 0):
    """A FAISS inner-product index of ``kind`` holding ``vectors`` (row ``r`` is id ``r``), trained first when the
    kind needs it (IVF's k-means on a sample). ``params`` as :func:`index_params` returns them (default: resolved
    for ``vectors``).

    Args:
        vectors: ``[n, d]`` float32, L2-normalised (the scores are then cosines).

    Raises:
        ClError: FAISS missing, an unknown kind, an empty or non-2-D array.
    """
    faiss = faiss_module()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ClError(f"cannot index an array of shape {tuple(x.shape)}: need [n >= 1, d]")
    n, d = x.shape
    p = dict(params) if params is not None else index_params(kind, n)
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, int(p["nlist"]), faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = IVF_NITER
        index.cp.seed = seed
        index.cp.max_points_per_centroid = IVF_POINTS_PER_LIST
        sample = min(n, IVF_POINTS_PER_LIST * int(p["nlist"]))
        rows = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False)) if sample < n else None
        index.train(x if rows is None else x[rows])
        index.nprobe = int(p["nprobe"])
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, int(p["m"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(p["ef_construction"])
        index.hnsw.efSearch = int(p["ef_search"])
    else:
        raise ClError(f"--kind {kind}: one of {', '.join(KINDS)}")
    index.add(x)
    return index


def set_search_params(index: Any, kind: str, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Set the search-time knobs of a FAISS index of ``kind`` in place (ignored for the others)."""
    if kind == "ivf" and nprobe is not None:
        index.nprobe = int(nprobe)
    if kind == "hnsw" and ef_search is not None:
        index.hnsw.efSearch = int(ef_search)


# -- the embedding folder ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Embeddings:
    """Every shard of an embedding folder, concatenated in shard order.

    Attributes:
        vectors: ``[n, d]`` float32, L2-normalised. ids: ``[n]`` int64 item ids.
        paths: id -> path relative to ``root`` (``None`` for an id whose file was skipped).
        manifest: the folder's ``manifest.json``.
    """

    vectors: np.ndarray
    ids: np.ndarray
    paths: list[str | None]
    manifest: dict[str, Any]

    @property
    def root(self) -> str:
        return str(self.manifest["root"])


def embeddings_digest(emb_dir: str | Path) -> str:
    """SHA-256 (hex) of an embedding folder's content: its manifest's identity (run digest, role, modality, file
    count) and every shard's bytes and sidecar, in order. It changes when the model or the data did.

    Raises:
        DataError: the folder is not a complete embedding folder (see :func:`embedding_shards`).
    """
    folder = Path(emb_dir)
    manifest, shards = embedding_shards(folder)
    h = hashlib.sha256()
    identity = {k: manifest.get(k) for k in ("run_digest", "role", "modality", "files", "dim", "shard_size")}
    h.update(json.dumps(identity, sort_keys=True).encode())
    for shard, sidecar in shards:
        h.update(f"{shard.name};".encode())
        h.update(sidecar.read_bytes())
        with open(shard, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def embedding_shards(emb_dir: str | Path) -> tuple[dict[str, Any], list[tuple[Path, Path]]]:
    """The manifest of an embedding folder and its ``(shard, sidecar)`` files, checked to be complete: every shard
    the manifest promises is there, embedded with the manifest's run digest from the files it lists
    (:func:`cl_core.embedding.shard_is_current`).

    Raises:
        DataError: no manifest (not an embedding folder), or missing / stale shards (re-run ``cl embed``: it
            resumes).
    """
    from .embedding import MANIFEST_NAME, read_manifest, shard_is_current, shard_names

    folder = Path(emb_dir)
    if not (folder / MANIFEST_NAME).is_file():
        raise DataError(f"{folder}: no {MANIFEST_NAME}; not a folder `cl embed` wrote")
    manifest = read_manifest(folder)
    missing: list[str] = []
    shards: list[tuple[Path, Path]] = []
    for i in range(int(manifest["shards"])):
        shard_name, sidecar_name = shard_names(i)
        shard, sidecar = folder / shard_name, folder / sidecar_name
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = None
        if not shard.is_file() or not shard_is_current(manifest, i, meta):
            missing.append(shard_name)
        shards.append((shard, sidecar))
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise DataError(f"{folder}: {len(missing)} of {manifest['shards']} shard(s) not embedded yet, or embedded "
                        f"from other files or another run ({shown}); run `cl embed` again (it resumes), on every rank")
    return manifest, shards


def load_embeddings(emb_dir: str | Path) -> Embeddings:
    """Every embedding and id of a complete embedding folder, and each id's source path.

    Raises:
        DataError: an incomplete folder (:func:`embedding_shards`), or a shard whose width is not the manifest's.
    """
    from safetensors.numpy import load_file

    folder = Path(emb_dir)
    manifest, shards = embedding_shards(folder)
    dim = int(manifest["dim"])
    vectors: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    paths: list[str | None] = [None] * int(manifest["files"])
    for shard, sidecar in shards:
        tensors = load_file(str(shard))
        emb, shard_ids = tensors["embeddings"], tensors["ids"].astype(np.int64)
        if emb.ndim != 2 or emb.shape[1] != dim or emb.shape[0] != shard_ids.shape[0]:
            raise DataError(f"{shard}: embeddings {tuple(emb.shape)} and ids {tuple(shard_ids.shape)} do not match "
                            f"the manifest's width {dim}; run `cl embed` again")
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        first = int(meta["first"])
        for offset, record in enumerate(meta["files"]):
            paths[first + offset] = record[0]
        for skipped in meta.get("skipped", []):
            paths[first + int(skipped["offset"])] = None
        vectors.append(emb.astype(np.float32, copy=False))
        ids.append(shard_ids)
    all_vectors = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
    all_ids = np.concatenate(ids) if ids else np.zeros((0,), np.int64)
    return Embeddings(vectors=all_vectors, ids=all_ids, paths=paths, manifest=manifest)


# -- building -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_index` did: ``built`` is False when the index was up to date (nothing was done).
    ``seconds``: wall time of the whole call. ``info``: the index's ``index.json``."""

    built: bool
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        i = self.info
        what = f"{i['kind']} index of {i['count']} x {i['dim']} ({i['role']} embeddings of {i['run']})"
        return f"{what}: index up to date" if not self.built else f"built a {what} in {self.seconds:.1f} s"


def build_index(emb_dir: str | Path, out_dir: str | Path, *, kind: str = "flat", nlist: int | None = None,
                nprobe: int | None = None, m: int | None = None, ef_search: int | None = None,
                ef_construction: int | None = None, force: bool = False,
                log: Callable[[str], None] | None = None) -> BuildResult:
    """Build a FAISS index of ``kind`` over the embeddings in ``emb_dir`` (what ``cl embed`` wrote) into
    ``out_dir``; skip the work when ``out_dir`` already holds that index of the same embeddings.

    Args:
        kind: ``flat`` (exact), ``ivf`` (inverted lists: ``nlist`` k-means cells, ``nprobe`` searched) or ``hnsw``
            (a graph: ``m`` links per node, ``ef_search`` / ``ef_construction`` beam widths).
        force: rebuild even when up to date.

    Returns:
        :class:`BuildResult` (``built`` False: "index up to date").

    Raises:
        ClError: FAISS missing, bad parameters. DataError: ``emb_dir`` is not a complete embedding folder.
    """
    start = time.perf_counter()
    say = log or (lambda message: None)
    emb_dir, out = Path(emb_dir), Path(out_dir)
    embedding_shards(emb_dir)  # a clear error for a folder that is not (yet) a complete embedding folder
    faiss_module()  # before any work: a missing FAISS is said first
    index_params(kind, 1 << 30, nlist=nlist, nprobe=nprobe, m=m, ef_search=ef_search, ef_construction=ef_construction)
    digest = embeddings_digest(emb_dir)
    requested = {"nlist": nlist, "m": m, "ef_construction": ef_construction}  # what the built structure depends on
    current = _read_info(out)
    if (not force and current is not None and current.get("embeddings_digest") == digest
            and current.get("kind") == kind and current.get("requested") == requested
            and (out / INDEX_NAME).is_file()):
        searched = index_params(kind, int(current["count"]), nlist=current["params"].get("nlist"), nprobe=nprobe,
                                m=current["params"].get("m"), ef_search=ef_search,
                                ef_construction=current["params"].get("ef_construction"))
        if searched != current["params"]:  # only the search settings changed: no rebuild
            current = {**current, "params": searched}
            atomic_write(out / INFO_NAME, lambda tmp: _write_json(tmp, current))
        return BuildResult(built=False, seconds=time.perf_counter() - start, info=current)
    data = load_embeddings(emb_dir)
    if data.vectors.shape[0] == 0:
        raise DataError(f"{emb_dir}: no embeddings to index (every file was skipped)")
    params = index_params(kind, data.vectors.shape[0], nlist=nlist, nprobe=nprobe, m=m, ef_search=ef_search,
                          ef_construction=ef_construction)
    say(f"indexing {data.vectors.shape[0]} x {data.vectors.shape[1]} embeddings ({kind})")
    index = new_index(data.vectors, kind, params)
    out.mkdir(parents=True, exist_ok=True)
    (out / INFO_NAME).unlink(missing_ok=True)  # from here until the new one is written, `out` is no index
    faiss = faiss_module()
    atomic_write(out / INDEX_NAME, lambda tmp: faiss.write_index(index, str(tmp)))
    atomic_write(out / IDS_NAME, lambda tmp: _save_npy(tmp, data.ids))
    atomic_write(out / ITEMS_NAME, lambda tmp: tmp.write_text(json.dumps({"root": data.root, "paths": data.paths}),
                                                         encoding="utf-8"))
    info = {
        "format": FORMAT, "kind": kind, "params": params, "requested": requested, "count": int(data.vectors.shape[0]),
        "dim": int(data.vectors.shape[1]), "metric": "inner product (cosine on L2-normalised embeddings)",
        "run": data.manifest["run"], "run_digest": data.manifest["run_digest"], "role": data.manifest["role"],
        "modality": data.manifest["modality"], "root": data.root, "embeddings": str(emb_dir.resolve()),
        "embeddings_digest": digest, "faiss": getattr(faiss, "__version__", "?"),
    }
    atomic_write(out / INFO_NAME, lambda tmp: _write_json(tmp, info))
    return BuildResult(built=True, seconds=time.perf_counter() - start, info=info)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


def _read_info(folder: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((folder / INFO_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


# -- searching ----------------------------------------------------------------------------------------------------


class Index:
    """A built index folder, opened for search (:meth:`open`)."""

    def __init__(self, folder: Path, faiss_index: Any, ids: np.ndarray, paths: Sequence[str | None],
                 info: dict[str, Any]) -> None:
        self.folder = folder
        self.faiss_index = faiss_index
        self.ids = ids
        self.paths = list(paths)
        self.info = info

    @classmethod
    def open(cls, folder: str | Path) -> Index:
        """Load ``index.faiss``, ``ids.npy``, ``items.json`` and ``index.json`` of a folder ``build_index`` wrote.

        Raises:
            ClError: FAISS missing. DataError: not an index folder (or an interrupted build), or its files disagree.
        """
        path = Path(folder)
        info = _read_info(path)
        if info is None or not (path / INDEX_NAME).is_file():
            if (path / "manifest.json").is_file():  # an embedding folder given where its index is meant
                raise DataError(f"{path}: an embedding folder, not an index; build one with `cl index build {path} "
                                f"--out INDEX` and give INDEX")
            raise DataError(f"{path}: not an index (no {INFO_NAME}, or its build was interrupted); run "
                            "`cl index build EMB --out " + str(path) + "`")
        faiss = faiss_module()
        try:
            index = faiss.read_index(str(path / INDEX_NAME))
            ids = np.load(path / IDS_NAME)
            items = json.loads((path / ITEMS_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError, RuntimeError) as exc:
            raise DataError(f"{path}: cannot read the index: {exc}; rebuild it with --force") from None
        if index.ntotal != info["count"] or ids.shape != (info["count"],) or index.d != info["dim"]:
            raise DataError(f"{path}: index.faiss holds {index.ntotal} x {index.d}, ids.npy {ids.shape[0]} ids, "
                            f"index.json says {info['count']} x {info['dim']}; rebuild it with --force")
        set_search_params(index, info["kind"], nprobe=info["params"].get("nprobe"),
                          ef_search=info["params"].get("ef_search"))
        return cls(path, index, ids.astype(np.int64), items["paths"], info)

    @property
    def kind(self) -> str:
        return str(self.info["kind"])

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    @property
    def root(self) -> Path:
        """The data root the items' paths are relative to."""
        return Path(self.info["root"])

    def __len__(self) -> int:
        return int(self.info["count"])

    def search(self, queries: Any, k: int = 10, *, nprobe: int | None = None,
               ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest items of each query by cosine similarity.

        Args:
            queries: ``[q, dim]`` (or ``[dim]``) float array or tensor; rows are L2-normalised here (a zero row stays
                zero and scores 0 everywhere).
            nprobe / ef_search: override the index's search settings for this call (IVF / HNSW).

        Returns:
            ``(scores [q, k] float32, ids [q, k] int64)``, best first; where fewer than ``k`` items are found, the
            row ends with score ``-inf`` and id ``-1``.

        Raises:
            ValueError: ``k`` < 1, or queries of another width than the index's.
        """
        if k < 1:
            raise ValueError(f"k = {k}: must be at least 1")
        q = np.asarray(queries.detach().cpu() if hasattr(queries, "detach") else queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries of shape {tuple(q.shape)}: the index holds {self.dim}-d embeddings")
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        q = np.ascontiguousarray(q / np.where(norms > 0, norms, 1.0), dtype=np.float32)
        if nprobe is not None or ef_search is not None:
            set_search_params(self.faiss_index, self.kind, nprobe=nprobe, ef_search=ef_search)
        try:
            scores, rows = self.faiss_index.search(q, k)
        finally:
            if nprobe is not None or ef_search is not None:
                set_search_params(self.faiss_index, self.kind, nprobe=self.info["params"].get("nprobe"),
                                  ef_search=self.info["params"].get("ef_search"))
        ids = np.where(rows >= 0, self.ids[np.clip(rows, 0, None)], -1).astype(np.int64)
        scores = np.where(rows >= 0, scores, -np.inf).astype(np.float32)
        return scores, ids

    def path(self, item_id: int) -> str:
        """The source path of an item, relative to :attr:`root`.

        Raises:
            KeyError: an id the index does not hold.
        """
        i = int(item_id)
        found = self.paths[i] if 0 <= i < len(self.paths) else None
        if found is None:
            raise KeyError(f"item id {item_id} is not in the index {self.folder}")
        return found
