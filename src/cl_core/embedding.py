"""Embedding a corpus of files with a trained run (``cl embed``): batched, sharded, resumable, split over ranks.

The files (a folder's files of the modality, found recursively and sorted by path; or files named one by one) are
numbered 0..N-1 in that order; the number is the item's **id**. Shard ``i`` holds ids ``[i * shard_size,
(i + 1) * shard_size)``; under ``torchrun`` rank ``r`` of ``w`` embeds the shards with ``i % w == r``. The output
folder holds

==========================  =====================================================================================
``emb-00000.safetensors``   ``embeddings`` ``[n, D]`` float32, L2-normalised; ``ids`` ``[n]`` int64
``emb-00000.json``          the shard's sidecar: its files (path relative to the data root, size, mtime in ns), the
                            run digest it was embedded with, the files skipped as unreadable (``--skip-bad``)
``manifest.json``           run, run digest of the role's tower, role, modality, data root, file count, dim, shard
                            size, shard count, a digest of each shard's file records, and the totals embedded /
                            skipped so far (``complete`` when every shard is current)
==========================  =====================================================================================

Every file is written to a temporary name and renamed into place, the shard before its sidecar, so a killed job
leaves no half-written shard. A shard whose sidecar names the same run digest, role and files (same sizes and
modification times) is not embedded again: a job that was stopped resumes where it stopped, and a changed file or a
changed model re-embeds exactly the shards it touches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .captioning import SUFFIXES  # torch-free
from .atomic import atomic_write, atomic_write_text
from .errors import ClError, DataError, indented_list

MANIFEST_NAME = "manifest.json"
FORMAT = 1
#: file suffixes a folder contributes per modality: ``cl caption``'s, and plain text files (one item per file)
CORPUS_SUFFIXES: dict[str, tuple[str, ...]] = {**SUFFIXES, "text": (".txt",)}
MODALITIES = ("image", "audio", "text")


def shard_names(i: int) -> tuple[str, str]:
    """``(embeddings file, sidecar)`` names of shard ``i``: ``emb-00003.safetensors``, ``emb-00003.json``."""
    return f"emb-{i:05d}.safetensors", f"emb-{i:05d}.json"


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` of an embedding folder.

    Raises:
        DataError: missing or unreadable.
    """
    path = Path(folder) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{Path(folder)}: no {MANIFEST_NAME}; not a folder `cl embed` wrote") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read it: {exc}") from None
    if not isinstance(manifest, dict) or "run_digest" not in manifest:
        raise DataError(f"{path}: not a manifest `cl embed` wrote")
    return manifest


def rank_from_env() -> tuple[int, int]:
    """``(rank, world_size)`` from the ``RANK`` / ``WORLD_SIZE`` environment variables torchrun sets; ``(0, 1)``
    outside torchrun.

    Raises:
        ClError: values that are not integers, or a rank outside ``[0, world_size)``.
    """
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ClError(f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}: not "
                      "integers") from None
    check_rank(rank, world)
    return rank, world


def check_rank(rank: int, world_size: int) -> None:
    """Raises ClError unless ``0 <= rank < world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ClError(f"rank {rank} of world size {world_size}: need 0 <= rank < world size")


def shards_of_rank(n_shards: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The shards rank ``rank`` of ``world_size`` embeds: ``i`` with ``i % world_size == rank``."""
    check_rank(rank, world_size)
    return list(range(rank, n_shards, world_size))


# -- files --------------------------------------------------------------------------------------------------------


def corpus_files(paths: Sequence[str | Path], modality: str) -> tuple[Path, list[Path]]:
    """The data root and the sorted files of a corpus.

    A folder contributes its files with the modality's suffixes (:data:`CORPUS_SUFFIXES`), found recursively,
    skipping hidden files and folders; a file is taken as it is. The data root is the one folder given, else the
    deepest folder holding everything given; files are sorted by their path relative to it (an item's id is its
    position), duplicates dropped. Nothing is opened here: unreadable files are found when they are embedded.

    Raises:
        ClError: an unknown modality. DataError: missing paths, or nothing to embed.
    """
    suffixes = CORPUS_SUFFIXES
    if modality not in suffixes:
        raise ClError(f"--modality {modality}: cl embed reads {', '.join(MODALITIES)} files")
    if not paths:
        raise DataError("no data given: name a folder or files (--data)")
    problems: list[str] = []
    given = [Path(p).absolute() for p in paths]
    found: set[Path] = set()
    for path in given:
        if path.is_dir():
            files = [p for p in _walk(path) if p.suffix.lower() in suffixes[modality]]
            if not files:
                problems.append(f"{path}: a folder with no {modality} files ({', '.join(suffixes[modality])})")
            found.update(files)
        elif path.is_file():
            found.add(path)
        else:
            problems.append(f"{path}: no such file or folder")
    if problems:
        raise DataError(f"{len(problems)} data path(s) cannot be embedded:\n" + indented_list(problems))
    if len(given) == 1 and given[0].is_dir():
        root = given[0]
    else:
        root = Path(os.path.commonpath([p if p.is_dir() else p.parent for p in given]))
    return root, sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _walk(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                yield Path(dirpath) / name


def read_corpus_item(pipeline: Any, role: str, modality: str, path: Path) -> Any:
    """What the encoder of ``role`` takes for one file: a PIL image, an audio file's path (after the tower's own
    check of the file, when it has one), a text file's content.

    Raises:
        ClError: the file cannot be read, the message starting with its path.
    """
    from .captioning import check_items, read_items

    try:
        if modality == "text":
            text = path.read_text(encoding="utf-8").strip()
            if not text:
                raise ClError(f"{path}: an empty text file")
            return text
        if modality == "audio":
            check_items(pipeline, role, [path])
        return read_items([path], modality)[0]
    except DataError as exc:  # check_items: "1 item(s) cannot be captioned:\n  <path>: <problem>"
        raise ClError(str(exc).split("\n", 1)[-1].strip()) from None
    except ClError:
        raise
    except UnicodeDecodeError:
        raise ClError(f"{path}: not UTF-8 text") from None
    except Exception as exc:  # noqa: BLE001 - any failure to read a user's file is that file's problem
        raise ClError(f"{path}: cannot read it: {type(exc).__name__}: {exc}") from None


# -- embedding ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbedResult:
    """What one call of :func:`embed_corpus` did on its rank.

    Attributes:
        out_dir: the embedding folder. manifest: its ``manifest.json`` after this call.
        written: shards embedded now. reused: shards of this rank that were already done (resumed past).
        items: files embedded now. skipped: ``"<path>: <problem>"`` of the files skipped now (``skip_bad``).
        seconds: wall time.
    """

    out_dir: Path
    manifest: dict[str, Any]
    written: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    items: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def embed_corpus(run: str | Path, modality: str, paths: Sequence[str | Path] | str | Path, out_dir: str | Path, *,
                 role: str | None = None, batch_size: int = 64, shard_size: int = 10000, device: Any = "cpu",
                 rank: int = 0, world_size: int = 1, skip_bad: bool = False, host: Any = None,
                 log: Callable[[str], None] | None = None) -> EmbedResult:
    """Embed every file of a corpus with a run's encoder of ``modality`` into sharded safetensors files.

    Args:
        run: a run folder, saved folder or Hub id (:func:`cl_core.weights.from_pretrained`).
        modality: ``image``, ``audio`` (WAV) or ``text`` (``.txt`` files, one item each).
        paths: a folder, or files (and folders); see :func:`corpus_files`.
        out_dir: the embedding folder (created; shards from an earlier call are reused when still valid).
        role: the encoder role; default as ``cl caption`` chooses it (:func:`cl_core.captioning.caption_role`).
        batch_size: items per forward pass. shard_size: items per output shard (the unit of resumption and of
            splitting over ranks).
        rank / world_size: this process embeds the shards ``i`` with ``i % world_size == rank``.
        skip_bad: skip unreadable files (recorded in the sidecars and counted in the manifest) instead of stopping.
        host: the plugin host (default: the installed plugins). log: called with one line per shard.

    Returns:
        :class:`EmbedResult`.

    Raises:
        DataError: missing data paths; an unreadable file without ``skip_bad`` (named; the shards finished before it
            are kept). ClError: no role of the run takes ``modality``, a bad rank. WeightsError / HubError: the run
            does not load.
    """
    import torch
    from safetensors.torch import save_file

    from .captioning import caption_device, caption_role, tower_digest
    from .weights import from_pretrained

    start = time.perf_counter()
    say = log or (lambda message: None)
    if batch_size < 1 or shard_size < 1:
        raise ClError(f"batch size {batch_size} / shard size {shard_size}: both must be at least 1")
    check_rank(rank, world_size)
    root, files = corpus_files([paths] if isinstance(paths, (str, Path)) else paths, modality)
    pipeline = from_pretrained(run, host=host, device=caption_device(str(device)))
    try:
        chosen = caption_role(pipeline, role, modality)
    except ClError as exc:  # its words are cl caption's
        raise ClError(str(exc).replace("cl caption", "cl embed")) from None
    encoder = pipeline.encoder(chosen)
    digest = tower_digest(encoder)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_shards = -(-len(files) // shard_size)
    rel = [f.relative_to(root).as_posix() for f in files]
    records = [[rel[j], *_stat(files[j])] for j in range(len(files))]
    shard_files = [files_digest(records[i * shard_size : (i + 1) * shard_size]) for i in range(n_shards)]
    run_path = Path(run)
    static = {
        "format": FORMAT, "run": str(run), "run_path": str(run_path.resolve()) if run_path.exists() else None,
        "run_digest": digest, "role": chosen, "modality": modality, "root": str(root), "files": len(files),
        "dim": int(encoder.embed_dim), "shard_size": shard_size, "shards": n_shards, "shard_files": shard_files,
    }
    if rank == 0:
        _remove_stale_shards(out, n_shards)
    _update_manifest(out, static)
    mine = shards_of_rank(n_shards, rank, world_size)
    written: list[int] = []
    reused: list[int] = []
    skipped_now: list[str] = []
    items_now = 0
    for i in mine:
        first, stop = i * shard_size, min((i + 1) * shard_size, len(files))
        shard_name, sidecar_name = shard_names(i)
        identity = {"run_digest": digest, "role": chosen, "modality": modality, "first": first,
                    "files": records[first:stop], "files_digest": shard_files[i]}
        if _is_done(out / shard_name, out / sidecar_name, identity):
            reused.append(i)
            continue
        t0 = time.perf_counter()
        vectors, ids, bad = _embed_shard(pipeline, chosen, modality, files[first:stop], first, batch_size, skip_bad)
        emb = torch.nn.functional.normalize(vectors, dim=1) if vectors.shape[0] else vectors
        tensors = {"embeddings": emb.to(torch.float32).contiguous(), "ids": torch.tensor(ids, dtype=torch.int64)}
        metadata = {"run_digest": digest, "role": chosen, "shard": str(i)}
        atomic_write(out / shard_name, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
        sidecar = {"format": FORMAT, "shard": i, **identity, "count": len(ids),
                   "skipped": [{"offset": j - first, "path": rel[j], "error": message} for j, message in bad],
                   "bytes": (out / shard_name).stat().st_size}
        atomic_write_text(out / sidecar_name, json.dumps(sidecar) + "\n")
        written.append(i)
        items_now += len(ids)
        skipped_now += [message for _, message in bad]
        say(f"shard {i + 1}/{n_shards}: {len(ids)} {modality} item(s)"
            + (f", {len(bad)} skipped" if bad else "") + f" ({time.perf_counter() - t0:.1f} s)")
    manifest = _update_manifest(out, static)
    return EmbedResult(out_dir=out, manifest=manifest, written=written, reused=reused, items=items_now,
                       skipped=skipped_now, seconds=time.perf_counter() - start)


def files_digest(records: Sequence[Sequence[Any]]) -> str:
    """SHA-256 (hex) of a shard's file records ``[relative path, size, mtime in ns]``: the manifest lists one per
    shard (``shard_files``), so a shard embedded from another listing of the corpus is known as stale."""
    return hashlib.sha256(json.dumps([list(r) for r in records]).encode()).hexdigest()


def shard_is_current(manifest: Mapping[str, Any], i: int, sidecar: Any) -> bool:
    """Whether a shard's sidecar (parsed) belongs to the manifest's corpus and run: same run digest, same first id,
    same files (their digest)."""
    return (isinstance(sidecar, dict) and sidecar.get("run_digest") == manifest["run_digest"]
            and sidecar.get("first") == i * int(manifest["shard_size"])
            and sidecar.get("files_digest") == manifest["shard_files"][i])


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _is_done(shard: Path, sidecar: Path, identity: dict[str, Any]) -> bool:
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        return all(meta.get(k) == v for k, v in identity.items()) and shard.stat().st_size == meta.get("bytes")
    except (OSError, ValueError, AttributeError):
        return False


def _embed_shard(pipeline: Any, role: str, modality: str, files: Sequence[Path], first: int, batch_size: int,
                 skip_bad: bool):
    """``(vectors [n, D] float32 CPU, ids, [(id, problem)])`` of one shard's files; the next batch's files are read
    on a thread while this one is embedded."""
    import torch

    def read(start: int):
        items: list[Any] = []
        ids: list[int] = []
        bad: list[tuple[int, str]] = []
        for offset, path in enumerate(files[start : start + batch_size], start):
            try:
                items.append(read_corpus_item(pipeline, role, modality, path))
                ids.append(first + offset)
            except ClError as exc:
                bad.append((first + offset, str(exc)))
        if bad and not skip_bad:
            what = bad[0][1] if len(bad) == 1 else (f"{len(bad)} files cannot be read:\n"
                                                    + indented_list([m for _, m in bad]))
            raise DataError(what + "\n(--skip-bad skips unreadable files; the shards finished so far are kept)")
        return items, ids, bad

    chunks: list[torch.Tensor] = []
    all_ids: list[int] = []
    all_bad: list[tuple[int, str]] = []
    starts = list(range(0, len(files), batch_size))
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, starts[0]) if starts else None
        for n, _ in enumerate(starts):
            assert pending is not None
            items, ids, bad = pending.result()
            pending = pool.submit(read, starts[n + 1]) if n + 1 < len(starts) else None
            all_bad += bad
            if items:
                chunks.append(pipeline.embed(role, items, batch_size=batch_size).float().cpu())
                all_ids += ids
    dim = int(pipeline.encoder(role).embed_dim)
    return (torch.cat(chunks) if chunks else torch.zeros(0, dim)), all_ids, all_bad


def _remove_stale_shards(out: Path, n_shards: int) -> None:
    """Remove shards numbered ``n_shards`` and above (left by an earlier, larger corpus)."""
    for path in out.glob("emb-*.*"):
        stem = path.name.split(".", 1)[0]
        try:
            number = int(stem.split("-", 1)[1])
        except (IndexError, ValueError):
            continue
        if number >= n_shards and path.suffix in (".safetensors", ".json"):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """An exclusive lock on the folder's manifest (ranks finish at once); none where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(out / ".manifest.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _update_manifest(out: Path, static: dict[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json``: ``static`` and the totals over the shards done so far (:func:`shard_is_current`)."""
    with _locked(out):
        embedded = skipped = done = 0
        for i in range(int(static["shards"])):
            shard_name, sidecar_name = shard_names(i)
            try:
                meta = json.loads((out / sidecar_name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if shard_is_current(static, i, meta) and (out / shard_name).is_file():
                done += 1
                embedded += int(meta.get("count", 0))
                skipped += len(meta.get("skipped", []))
        manifest = {**static, "embedded": embedded, "skipped": skipped, "shards_done": done,
                    "complete": done == int(static["shards"])}
        atomic_write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return manifest
