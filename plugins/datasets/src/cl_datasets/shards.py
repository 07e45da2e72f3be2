"""WebDataset tar shards: writing the examples of any data source, and reading them back as raw samples.

A shard folder holds ``<split>-<NNNNNN>.tar`` files in the WebDataset layout (each example a group of tar members
sharing a key: ``<key>.png`` an RGB image, ``<key>.txt`` a text, ``<key>.npy`` an array such as a waveform,
``<key>.cls`` an integer label; written with ``webdataset.TarWriter``, read with ``webdataset.tariterators``), and an
index ``shards.json``: the fields and their extensions, the class names, and per split the shards with their example
counts (what a streaming sampler needs to know the epoch's length without reading the shards) and the split's
class names and descriptions (a split's labels index its own class names: held-out concepts have their own).

Writing is atomic per shard (a temporary name, then ``os.replace``) and the index is written last, so a killed
``cl data shard`` leaves no shard the index names half-written. Reading goes through ``fsspec`` (local paths and
URLs: ``http(s)://`` needs ``aiohttp``, ``pip install 'cl-datasets[http]'``), one shard at a time as a stream
(``tarfile`` mode ``r|*``).
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cl_core.api import DataError, DataSource, atomic_write, atomic_write_text

INDEX = "shards.json"
FORMAT = 1
#: extension of each kind of value
EXTENSIONS = {"image": "png", "text": "txt", "array": "npy", "label": "cls"}


# -- encoding and decoding one value -----------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "text"
    if hasattr(value, "convert") and hasattr(value, "size"):  # a PIL image
        return "image"
    if isinstance(value, np.ndarray):
        if value.dtype == np.uint8 and value.ndim == 3 and value.shape[2] in (3, 4):
            return "image"
        return "array"
    if isinstance(value, (int, np.integer)):
        return "label"
    raise DataError(f"cannot store a {type(value).__name__} in a shard (texts, images, arrays and labels only)")


def encode_value(value: Any, ext: str) -> bytes:
    """The bytes of one field value stored under extension ``ext`` (``png``, ``txt``, ``npy``, ``cls``)."""
    if ext == "txt":
        return str(value).encode("utf-8")
    if ext == "cls":
        return str(int(value)).encode("ascii")
    buffer = io.BytesIO()
    if ext == "png":
        from PIL import Image

        image = value if hasattr(value, "convert") else Image.fromarray(np.asarray(value))
        image.convert("RGB").save(buffer, format="PNG")
    elif ext == "npy":
        np.save(buffer, np.asarray(value), allow_pickle=False)
    else:
        raise DataError(f"unknown shard extension {ext!r}")
    return buffer.getvalue()


def decode_value(data: bytes, ext: str) -> Any:
    """The value of ``data`` stored under ``ext``: a uint8 ``[H, W, 3]`` array, a string, an array or an int.

    Raises:
        ValueError: the bytes are not a valid value of that kind.
    """
    if ext == "txt":
        return data.decode("utf-8")
    if ext == "cls":
        return int(data.decode("ascii").strip())
    if ext == "png":
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    if ext == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    raise ValueError(f"unknown shard extension {ext!r}")


# -- writing ----------------------------------------------------------------------------------------------------------


def _read_index(out: Path) -> dict[str, Any]:
    path = out / INDEX
    if not path.exists():
        return {"format": FORMAT, "fields": {}, "splits": {}}
    return json.loads(path.read_text())


def write_shards(source: DataSource, out: str | Path, *, split: str = "train", shard_size: int = 1000,
                 fields: Sequence[str] | None = None, chunk: int = 256,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write the examples of ``source`` as WebDataset shards ``<split>-NNNNNN.tar`` of ``shard_size`` examples in
    ``out`` and add the split to ``out/shards.json``; the labels go in as ``cls`` and the class names into the index.

    Args:
        fields: the source's fields to store (default all).
        chunk: examples fetched from the source at a time.
        progress: called with (examples written, total) after each shard.

    Returns:
        The index (``{"format", "fields": {field: ext}, "splits": {split: {"shards": [{"name", "count"}],
        "class_names"?, "class_descriptions"?}}}``).

    Raises:
        DataError: an empty source, a field it lacks, a value that cannot be stored, ``shard_size < 1``, or a split
            with shards already in ``out``.
    """
    import webdataset as wds

    if shard_size < 1:
        raise DataError(f"shard size must be >= 1, got {shard_size}")
    n = len(source)
    if n == 0:
        raise DataError(f"split {split!r} has no examples to shard")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = _read_index(out)
    if split in index["splits"] or any(out.glob(f"{split}-*.tar")):
        raise DataError(f"{out} already has shards of split {split!r}; write into another folder (or delete this "
                        "one first)")
    wanted = list(fields) if fields is not None else list(source.fields)
    missing = [f for f in wanted if source.fields and f not in source.fields]
    if missing:
        raise DataError(f"the data has no field(s) {', '.join(map(repr, missing))}; it gives "
                        f"{', '.join(source.fields)}")
    labels = source.labels
    extensions: dict[str, str] = dict(index["fields"])
    shards = []
    for first in range(0, n, shard_size):
        name = f"{split}-{first // shard_size:06d}.tar"
        buffer = io.BytesIO()
        with wds.TarWriter(buffer, encoder=False) as writer:
            for at in range(first, min(n, first + shard_size), chunk):
                rows = list(range(at, min(n, first + shard_size, at + chunk)))
                got = source.get(rows)
                for j, row in enumerate(rows):
                    sample = {"__key__": f"{split}-{row:09d}"}
                    for field in wanted:
                        value = got[field][j]
                        ext = extensions.setdefault(field, EXTENSIONS[_kind(value)])
                        sample[f"{field}.{ext}"] = encode_value(value, ext)
                    if labels is not None:
                        sample["label.cls"] = encode_value(int(labels[row]), "cls")
                    writer.write(sample)
        shard = buffer.getvalue()
        atomic_write(out / name, lambda tmp: tmp.write_bytes(shard))
        shards.append({"name": name, "count": min(n, first + shard_size) - first})
        if progress is not None:
            progress(min(n, first + shard_size), n)
    if labels is not None:
        extensions["label"] = "cls"
    index["fields"] = extensions
    entry: dict[str, Any] = {"shards": shards}
    if source.class_names is not None:  # each split's labels index its own class names (held-out concepts)
        entry["class_names"] = list(source.class_names)
    if source.class_descriptions is not None:
        entry["class_descriptions"] = [list(d) for d in source.class_descriptions]
    index["splits"][split] = entry
    atomic_write_text(out / INDEX, json.dumps(index, indent=1))
    return index


# -- reading ----------------------------------------------------------------------------------------------------------


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What reading a path or URL raises when the shard or the server fails: ``OSError`` (fsspec maps a missing
    file, a refused connection and an HTTP 404 to ``FileNotFoundError``), and aiohttp's own errors (an HTTP 5xx,
    a connection cut mid-transfer), which are not ``OSError``s."""
    # asyncio's TimeoutError (fsspec's FSTimeoutError) is the built-in one only from Python 3.11
    try:
        from aiohttp import ClientError
    except ImportError:
        return (OSError, asyncio.TimeoutError)
    return (OSError, asyncio.TimeoutError, ClientError)


def _cut_errors() -> tuple[type[BaseException], ...]:
    """The errors of a shard that opened but ended early: a cut or corrupt tar stream, or an HTTP body shorter than
    its ``Content-Length``."""
    try:
        from aiohttp import ClientPayloadError
    except ImportError:
        return (tarfile.TarError, EOFError)
    return (tarfile.TarError, EOFError, ClientPayloadError)


def _check_protocol(url: str) -> None:
    """Raises DataError naming the install command when ``url``'s protocol needs a package that is missing."""
    import fsspec

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    try:
        fsspec.get_filesystem_class(protocol)
        if protocol in ("http", "https"):
            import aiohttp  # noqa: F401  # fsspec imports it only when the first request is made
    except ImportError:
        raise DataError(f"{url}: reading {protocol}:// shards needs aiohttp: pip install 'cl-datasets[http]'") from None
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise DataError(f"{url}: {exc}") from None


def read_index(root: str, read_timeout: float | None = None) -> dict[str, Any]:
    """The ``shards.json`` of a shard folder or URL prefix.

    Raises:
        DataError: it cannot be read, is not JSON, or is of another format.
    """
    import fsspec

    url = root.rstrip("/") + "/" + INDEX
    _check_protocol(url)
    try:
        with fsspec.open(url, "rt", **_open_options(url, read_timeout)) as f:
            index = json.load(f)
    except (ValueError, *_transport_errors()) as exc:
        # fsspec reports a refused connection and an HTTP error on a HEAD request as FileNotFoundError too
        hint = ("check that the server is up and the URL is right (the folder holding shards.json)" if "://" in url
                else "write shards with `cl data shard`")
        raise DataError(f"{url}: cannot read the shard index ({type(exc).__name__}: {exc}); {hint}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT or "splits" not in index:
        raise DataError(f"{url}: not a shard index of format {FORMAT}")
    return index


class ShardProblem(Exception):
    """A shard that cannot be read on, or an example that lacks a field: ``url``, the example ``key`` (None when
    the shard broke before any key), and what went wrong."""

    def __init__(self, url: str, key: str | None, what: str) -> None:
        super().__init__(f"{url}{f' (example {key})' if key else ''}: {what}")
        self.url, self.key, self.what = url, key, what


def _open_options(url: str, read_timeout: float | None) -> dict[str, Any]:
    """fsspec storage options: an aiohttp timeout for ``http(s)://`` (None: aiohttp's own), nothing otherwise."""
    if read_timeout is None or not url.startswith(("http://", "https://")):
        return {}
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=read_timeout, sock_read=read_timeout)
    return {"client_kwargs": {"timeout": timeout}}


def raw_samples(url: str, read_timeout: float | None = None) -> Iterator[dict[str, Any]]:
    """The examples of one shard, in order, as ``{"__key__": key, "<field>.<ext>": bytes, ...}`` (not decoded;
    :func:`pick_fields` takes the fields).

    ``read_timeout``: seconds an HTTP shard may send nothing before it fails (a stalled server).

    Raises:
        ShardProblem: the shard cannot be opened (unreachable URL, missing file) or is corrupt or truncated (raised
            where reading stops: the examples before it were yielded), or an HTTP read timed out.
    """
    import fsspec
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    _check_protocol(url)
    last: str | None = None
    try:
        # tar_file_iterator reads it as a stream (tarfile mode "r|*")
        with fsspec.open(url, "rb", **_open_options(url, read_timeout)) as f:
            members = (dict(member, __url__=url) for member in tar_file_iterator(f))
            for sample in group_by_keys(members):
                last = sample.get("__key__")
                yield sample
    except (EOFError, tarfile.TarError, ValueError, *_transport_errors()) as exc:
        detail = str(exc).split(" @ <")[0]  # tarfile appends the file object's repr
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            after = f"after example {last}" if last else "before its first example"
            raise ShardProblem(url, None, f"timed out {after}: nothing received for {read_timeout} s (a stalled or "
                                          "slow server; raise data.read_timeout)") from None
        if last is not None or isinstance(exc, _cut_errors()):
            what = f"corrupt or truncated {f'after example {last}' if last else 'before its first example'}"
        else:
            what = "cannot open it"
        raise ShardProblem(url, None, f"{what} ({type(exc).__name__}: {detail})") from None


def pick_fields(sample: Mapping[str, Any], fields: Mapping[str, str], url: str) -> dict[str, Any]:
    """``{"__key__": key, field: bytes}`` of a raw sample: each field under ``<field>.<ext>``, or under the bare
    extension as other WebDataset writers store it (``<key>.jpg``, ``<key>.txt``).

    Raises:
        ShardProblem: the example lacks a field.
    """
    out: dict[str, Any] = {"__key__": sample.get("__key__")}
    for field, ext in fields.items():
        data = sample.get(f"{field}.{ext}", sample.get(ext))
        if data is None:
            raise ShardProblem(url, out["__key__"], f"no field {field!r} ({field}.{ext})")
        out[field] = data
    return out


def decode_sample(sample: Mapping[str, Any], fields: Mapping[str, str], url: str) -> dict[str, Any]:
    """The decoded values of a raw sample.

    Raises:
        ShardProblem: a value that does not decode (a broken PNG, text that is not UTF-8).
    """
    try:
        return {field: decode_value(sample[field], ext) for field, ext in fields.items()}
    except Exception as exc:  # Pillow and numpy raise many kinds
        raise ShardProblem(url, sample.get("__key__"), f"cannot decode ({type(exc).__name__}: {exc})") from None


def shard_url(root: str, name: str) -> str:
    """The URL or path of shard ``name`` under ``root``."""
    return root.rstrip("/") + "/" + name
