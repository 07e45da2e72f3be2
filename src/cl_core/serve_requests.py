"""What a client sends to ``cl serve`` (:mod:`cl_core.serve`), read and checked: request bodies read under a
limit, multipart forms parsed in memory, uploaded images and WAV files decoded in memory, query fields validated.

Nothing here writes to disk or opens a path a client named: an upload is bytes until it is a PIL image or a
waveform. Every refusal is a :class:`Problem` (an HTTP status and a one-line detail).
"""

import io
import json
import re
import wave
from typing import Any

import numpy as np

#: image formats an upload may be (Pillow's format names)
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
#: largest uploaded image, in pixels (width x height); more is refused with 413 before decoding
MAX_PIXELS = 40_000_000
#: bytes a multipart body may hold besides its file: part headers, boundaries and the small text fields
FORM_OVERHEAD = 64 * 1024
#: largest JSON body, in bytes
JSON_LIMIT = 64 * 1024
#: longest text query, in characters
MAX_TEXT = 1000
#: most results one query may ask for
MAX_K = 100


class Problem(Exception):
    """A request the server refuses: HTTP ``status`` and a one-line ``detail`` for the client."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def multipart_parser() -> Any:
    """python-multipart's ``MultipartParser`` class (ImportError when it is not installed)."""
    try:
        from python_multipart.multipart import MultipartParser
    except ImportError:  # python-multipart before 0.0.13
        from multipart.multipart import MultipartParser  # type: ignore[no-redef,import-not-found,unused-ignore]
    return MultipartParser


# -- bodies -----------------------------------------------------------------------------------------------


async def read_body(request: Any, limit: int) -> bytes:
    """The body of ``request``, read chunk by chunk and given up as soon as it passes ``limit`` bytes.

    Raises:
        Problem: 413 when the declared ``Content-Length`` or the bytes received pass ``limit``; 400 for a
            malformed ``Content-Length``.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise Problem(400, f"Content-Length {declared!r} is not a number") from None
        if size > limit:
            raise Problem(413, f"a body of {size} bytes: the limit is {limit}")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise Problem(413, f"a body of more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_multipart(body: bytes, content_type: str, *, max_parts: int = 16) -> dict[str, bytes]:
    """The parts of a ``multipart/form-data`` body, in memory, by field name: ``{name: content bytes}`` (file
    names and part content types are ignored: the content decides what a file is).

    Raises:
        Problem: 400 for a body without a boundary, a malformed one, more than ``max_parts`` parts, a field sent
            twice or a part without a name.
    """
    try:
        from python_multipart.multipart import parse_options_header
    except ImportError:  # python-multipart before 0.0.13
        from multipart.multipart import parse_options_header  # type: ignore[no-redef,import-not-found,unused-ignore]

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise Problem(400, "a multipart body without a boundary")
    parts: list[dict[str, Any]] = []
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}

    def begin() -> None:
        if len(parts) >= max_parts:
            raise Problem(400, f"more than {max_parts} form fields")
        parts.append({"headers": {}, "data": bytearray()})

    def field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def header_end() -> None:
        parts[-1]["headers"][bytes(header["field"]).lower()] = bytes(header["value"])
        header["field"], header["value"] = bytearray(), bytearray()

    def data(chunk: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += chunk[start:end]

    callbacks = {"on_part_begin": begin, "on_header_field": field, "on_header_value": value,
                 "on_header_end": header_end, "on_part_data": data}
    try:
        parser = multipart_parser()(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Problem:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart's parse errors (ValueError and subclasses)
        raise Problem(400, f"a malformed multipart body: {type(exc).__name__}") from None
    fields: dict[str, bytes] = {}
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise Problem(400, "a form part without a name")
        if name in fields:
            raise Problem(400, f"the form field {name!r} is sent twice")
        fields[name] = bytes(part["data"])
    return fields


def decode_image(data: bytes) -> Any:
    """The RGB PIL image of an uploaded file, decoded in memory (a GIF: its first frame).

    Raises:
        Problem: 415 for anything but a PNG, JPEG, GIF or WebP image Pillow verifies; 413 for more than
            :data:`MAX_PIXELS` pixels.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS)) as probe:
            width, height = probe.size
            if width * height > MAX_PIXELS:
                raise Problem(413, f"an image of {width} x {height} pixels: at most {MAX_PIXELS} pixels")
            probe.verify()
        with Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS)) as image:
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
                return flat
            return image.convert("RGB")
    except Problem:
        raise
    except Image.DecompressionBombError:
        raise Problem(413, f"an image of more than {MAX_PIXELS} pixels") from None
    except Exception:  # noqa: BLE001 - whatever Pillow raises on bad bytes (OSError, SyntaxError, ValueError, ...)
        raise Problem(415, f"not a {', '.join(IMAGE_FORMATS[:-1])} or {IMAGE_FORMATS[-1]} image Pillow can "
                           "read") from None


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """``(samples [S] float32 in [-1, 1], mono; sample rate in Hz)`` of a WAV file's bytes, decoded in memory
    (PCM with the standard library's ``wave``; float and other encodings with soundfile when it is installed).

    Raises:
        Problem: 415 for anything that is not a WAV file with at least one sample.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise Problem(415, "not a WAV file (RIFF/WAVE)")
    try:
        with wave.open(io.BytesIO(data)) as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
        samples = _pcm(raw, width).reshape(-1, channels).mean(axis=1)
    except (wave.Error, EOFError, ValueError):
        samples, rate = _soundfile(data)
    if samples.size == 0 or rate <= 0:
        raise Problem(415, "an empty WAV file")
    return samples.astype(np.float32), int(rate)


def _pcm(raw: bytes, width: int) -> np.ndarray:
    if width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    if width == 2:
        return np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    if width == 3:
        b = np.frombuffer(raw[: len(raw) // 3 * 3], np.uint8).reshape(-1, 3).astype(np.int32)
        return ((b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16) << 8 >> 8).astype(np.float32) / 8388608
    if width == 4:
        return np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648
    raise ValueError(f"{width}-byte samples")


def _soundfile(data: bytes) -> tuple[np.ndarray, int]:
    try:
        import soundfile

        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception:  # noqa: BLE001 - no soundfile, or libsndfile cannot read it
        raise Problem(415, "a WAV file neither wave nor soundfile can read") from None
    return samples.mean(axis=1), int(rate)


def resample(samples: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    """``samples`` ``[S]`` at ``rate`` Hz linearly interpolated to ``to_rate`` Hz (``samples`` itself when equal)."""
    if rate == to_rate:
        return samples
    n = max(1, round(len(samples) * to_rate / rate))
    return np.interp(np.arange(n) * (rate / to_rate), np.arange(len(samples)), samples).astype(np.float32)


# -- requests ------------------------------------------------------------------------------------------------------


def whole_k(value: Any) -> int:
    """``k``, the number of results asked for, as an int from 1 to :data:`MAX_K`.

    Raises:
        Problem: 400 for anything else.
    """
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise Problem(400, f"k = {value!r}: a whole number")
    try:
        k = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's 1e400 is infinity
        raise Problem(400, f"k = {value!r}: a whole number") from None
    if not 1 <= k <= MAX_K:
        raise Problem(400, f"k = {k}: from 1 to {MAX_K}")
    return k


def query_text(value: Any, name: str = "text") -> str | None:
    """A text field, stripped (a form's bytes decoded as UTF-8); None when absent or blank.

    Raises:
        Problem: 400 for a non-string (JSON), 413 for more than :data:`MAX_TEXT` characters.
    """
    if value is None or value == "" or value == b"":
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if not isinstance(text, str):
        raise Problem(400, f"{name}: a string")
    if len(text) > MAX_TEXT:
        raise Problem(413, f"{name}: {len(text)} characters; at most {MAX_TEXT}")
    return text.strip() or None


async def read_fields(request: Any, max_upload_bytes: int) -> dict[str, Any]:
    """A query's fields: a JSON object's keys, or a multipart form's parts (files as bytes), each file at most
    ``max_upload_bytes``.

    Raises:
        Problem: 415 for another content type, 413 for a body or file over its limit, 400 for bad JSON or form.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            fields = json.loads(await read_body(request, JSON_LIMIT))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Problem(400, "the body is not JSON") from None
        if not isinstance(fields, dict):
            raise Problem(400, "the body must be a JSON object")
        return fields
    if kind == "multipart/form-data":
        body = await read_body(request, max_upload_bytes + FORM_OVERHEAD)
        fields = parse_multipart(body, request.headers["content-type"])
        for name in ("image", "audio"):
            if name in fields and len(fields[name]) > max_upload_bytes:
                raise Problem(413, f"an upload of {len(fields[name])} bytes: the limit is {max_upload_bytes}")
        return fields
    raise Problem(415, "send application/json or multipart/form-data")


def parse_item_id(value: Any, *, status: int = 400) -> int:
    """An item id a client sent, as an int: ASCII digits only (no sign, space, or path).

    Raises:
        Problem: ``status`` (400; 404 for the thumbnail URL) for anything else.
    """
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if isinstance(value, bool) or not re.fullmatch(r"[0-9]{1,18}", text):
        raise Problem(status, f"id {text[:40]!r}: an item id is a whole number")
    return int(text)
