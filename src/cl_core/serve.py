"""``cl serve RUN INDEX``: a search page over an indexed corpus (:mod:`cl_core.search`), as a small FastAPI app.

:func:`create_app` wraps a :class:`~cl_core.search.Searcher`. The page (``templates/serve.html``, plain HTML and
JavaScript) only sends queries and draws what comes back; every model runs here.

====================  =================================================================================================
``GET /``             the page
``GET /api/info``     the run, the corpus (modality, item count), which query modalities, labels and captions exist
``POST /api/search``  JSON ``{"text": str, "k": int}``, or multipart with one ``image`` (PNG, JPEG, GIF, WebP) or
                      ``audio`` (WAV) file and an optional ``k`` field. Answers ``{"hits": [{"id", "score", "path",
                      "thumb"}], "ms", "labels": [{"label", "p"}], "caption"?}`` (labels and caption: image and
                      audio queries, when the app has labels / a decoder)
``POST /api/combine`` embedding arithmetic: the sum of the normalised embeddings of an uploaded ``image`` or
                      ``audio`` file, an indexed item ``id``, a ``text`` (each added) and a ``minus`` text
                      (subtracted), re-normalised; JSON or multipart with those fields. Answers like search
``GET /api/thumb/ID`` a PNG thumbnail of the indexed item ``ID`` (an integer): images scaled to fit
                      :data:`THUMB_SIZE` px, audio a waveform, text the start of the text
====================  =================================================================================================

Security: the server binds 127.0.0.1 unless told otherwise (:func:`is_loopback`), and accepts only requests whose
``Host`` is one of ``allowed_hosts`` (loopback names by default: a web page elsewhere cannot reach it through DNS
rebinding). Request bodies are read chunk by chunk and refused with 413 as soon as they pass the limit (a declared
``Content-Length`` over it is refused before reading): ``max_upload_bytes`` for a file plus
:data:`~cl_core.serve_requests.FORM_OVERHEAD` for the form around it, :data:`~cl_core.serve_requests.JSON_LIMIT` for
JSON. Uploads are decoded in memory, never written to disk (:mod:`cl_core.serve_requests`), and must be a PNG, JPEG,
GIF or WebP image Pillow verifies, or a WAV file, else 415. Nothing a
client sends is used as a file path: thumbnails and ``id`` parts name an item by its integer id, mapped to a file
through the index and :meth:`~cl_core.search.Searcher.resolve` (404 for an unknown id, 403 for an index entry
leading outside the data root). Errors answer ``{"detail": message}``.

FastAPI, uvicorn and python-multipart are the ``serve`` extra (``pip install "cl-core[serve]"``).
"""

import io
import ipaddress
import math
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ClError
from .serve_requests import (MAX_K, Problem, decode_image, decode_wav, multipart_parser, parse_item_id, query_text,
                             read_fields, resample, whole_k)

#: thumbnails fit in a square of this many pixels
THUMB_SIZE = 96
#: thumbnails kept in memory (PNG bytes, a few KB each)
THUMB_CACHE = 4096
#: the ``Host`` names a server bound to loopback answers
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
INSTALL_HINT = 'cl serve needs FastAPI, uvicorn and python-multipart: pip install "cl-core[serve]"'
TEMPLATE = Path(__file__).parent / "templates" / "serve.html"
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
}


def web_modules() -> Any:
    """The ``fastapi`` module (uvicorn and python-multipart checked too).

    Raises:
        ClError: one of them is missing (names the extra that installs them).
    """
    try:
        import fastapi
        import uvicorn  # noqa: F401

        multipart_parser()
    except ImportError:
        raise ClError(INSTALL_HINT) from None
    return fastapi


# -- thumbnails ---------------------------------------------------------------------------------------------------


def thumbnail_png(file: Path, modality: str) -> bytes:
    """PNG bytes of a thumbnail of an indexed ``file`` that fits in :data:`THUMB_SIZE` px: an image scaled (small
    ones enlarged by whole factors, pixels kept sharp), a WAV file's waveform, a text file's first words.

    Raises:
        OSError / ValueError / Problem: the file cannot be read as its modality.
    """
    from PIL import Image, ImageDraw

    if modality == "image":
        with Image.open(file) as source:
            source.draft("RGB", (THUMB_SIZE, THUMB_SIZE))  # JPEG: decode at a reduced scale (others ignore it)
            image = source.convert("RGBA")
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        side = max(flat.size)
        if side > THUMB_SIZE:
            flat.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
        elif side * 2 <= THUMB_SIZE:
            factor = THUMB_SIZE // side
            flat = flat.resize((flat.width * factor, flat.height * factor), Image.Resampling.NEAREST)
    elif modality == "audio":
        samples, _ = decode_wav(file.read_bytes())
        flat = Image.new("RGB", (THUMB_SIZE, THUMB_SIZE // 2), (255, 255, 255))
        draw = ImageDraw.Draw(flat)
        columns = np.array_split(samples, THUMB_SIZE) if len(samples) >= THUMB_SIZE else [samples] * THUMB_SIZE
        mid, half = THUMB_SIZE // 4, THUMB_SIZE // 4 - 2
        peak = max(float(np.abs(samples).max()), 1e-6)
        for x, column in enumerate(columns):
            low, high = float(column.min()) / peak, float(column.max()) / peak
            draw.line([(x, mid - high * half), (x, mid - low * half)], fill=(40, 90, 200))
    else:
        text = file.read_text(encoding="utf-8", errors="replace")[:200]
        flat = Image.new("RGB", (THUMB_SIZE, THUMB_SIZE // 2), (250, 250, 240))
        lines = [text[i : i + 15] for i in range(0, min(len(text), 45), 15)]
        ImageDraw.Draw(flat).multiline_text((4, 4), "\n".join(lines), fill=(30, 30, 30))
    out = io.BytesIO()
    flat.save(out, format="PNG")
    return out.getvalue()


# -- what the models add to a query --------------------------------------------------------------------------------


class ZeroShot:
    """Zero-shot labels of a query: ``labels`` embedded by the run's text tower (the prompt ``"{}"``: the label
    itself), scored against a query's embedding by cosine times the logit scale of the scorer the run trained the
    two roles with (100 when it has none), and softmaxed over the labels.

    Raises:
        ClError: no labels, or a run without a text tower.
    """

    def __init__(self, searcher: Any, labels: Sequence[str]) -> None:
        self.labels = [str(label).strip() for label in labels if str(label).strip()]
        if not self.labels:
            raise ClError("the label list is empty: give one class name per line")
        self.searcher = searcher
        self.role = searcher.query_role("text")
        vectors = searcher.pipeline.embed(self.role, [label for label in self.labels]).float().cpu().numpy()
        self.vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def scale(self, query_role: str) -> float:
        """The logit scale of the scorer of ``query_role`` against the text role (100 without one)."""
        scorer = self.searcher.pipeline.scorer_for(query_role, self.role)
        value = getattr(scorer, "scale", None) if scorer is not None else None
        return float(value) if value is not None else 100.0

    def top(self, vector: np.ndarray, query_role: str, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` most probable labels of a query embedding ``vector`` ``[dim]``: ``[{"label", "p"}]``, best
        first (``p`` the softmax probability over every label)."""
        logits = self.scale(query_role) * (self.vectors @ vector.astype(np.float32))
        p = np.exp(logits - logits.max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")[:k]
        return [{"label": self.labels[i], "p": round(float(p[i]), 6)} for i in order]


def space_digest(module: Any) -> str:
    """SHA-256 (hex) of a tower's floating-point weights in state-dict order (dtype, shape, bytes; names left out,
    so a tower wrapped by ``core.from-run`` digests as itself). Equal digests: one space's tower."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for value in module.state_dict().values():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_captioners(searcher: Any, decoder_runs: Sequence[Any], host: Any, device: str) -> list[tuple[str, Any]]:
    """``(name, pipeline)`` of each decoder run (a run with a [decoder]), with the searcher's image tower put in for
    the searcher's image role. A decoder run must hold one of the searched run's towers (a ``core.from-run`` tower
    of it counts: :func:`space_digest`), else its captions would decode another space.

    Raises:
        ClError: a run that does not load, has no [decoder], or shares no tower with the searched run; a searched
            run without an image tower.
    """
    from .captioning import caption_pipeline

    if not decoder_runs:
        return []
    role = searcher.query_role("image")
    ours = {space_digest(searcher.pipeline.encoder(r)): r for r in searcher.pipeline.roles}
    out = []
    for run in decoder_runs:
        pipeline = caption_pipeline(str(run), device, host)
        if pipeline.decoder is None:
            raise ClError(f"--decoder {run}: it has no [decoder] to caption with")
        if not any(space_digest(pipeline.encoder(r)) in ours for r in pipeline.roles):
            raise ClError(f"--decoder {run}: none of its towers ({', '.join(pipeline.roles) or 'none'}) is a tower of "
                          f"the searched run ({', '.join(searcher.pipeline.roles)}): it decodes another space")
        pipeline.encoders[role] = searcher.pipeline.encoder(role)
        out.append((Path(str(run)).name, pipeline))
    return out


# -- the service ---------------------------------------------------------------------------------------------------


class SearchService:
    """What the endpoints call: queries (model calls serialised by one lock), labels, captions, thumbnails."""

    def __init__(self, searcher: Any, zero_shot: ZeroShot | None, captioners: list[tuple[str, Any]]) -> None:
        self.searcher = searcher
        self.zero_shot = zero_shot
        self.captioners = captioners
        self.lock = threading.Lock()
        self._thumbs: OrderedDict[int, bytes] = OrderedDict()
        self._thumbs_lock = threading.Lock()

    def search(self, modality: str, item: Any, k: int) -> dict[str, Any]:
        """Hits of one query (``modality``: text, image or audio), with labels and a caption for image and audio
        queries when the app has them.

        Raises:
            ClError: the run cannot embed such a query.
        """
        with self.lock:
            vector = self.searcher.embed(modality, item)
            out: dict[str, Any] = {"hits": self._hits(self.searcher.query_embedding(vector, k)), "labels": []}
            if self.zero_shot is not None and modality != "text":
                out["labels"] = self.zero_shot.top(vector, self.searcher.query_role(modality))
            if modality == "image" and self.captioners:
                role = self.searcher.query_role("image")
                captions = [{"decoder": name, "text": p.caption(role, [item])[0]} for name, p in self.captioners]
                out["caption"], out["captions"] = captions[0]["text"], captions
        return out

    def combine(self, parts: list[tuple[str, Any, float]], k: int) -> dict[str, Any]:
        """Hits of the normalised sum of ``parts`` (``(modality, item, weight)``; the modality ``"id"``: an indexed
        item by id, embedded from its file).

        Raises:
            Problem: 404 / 403 for an ``id`` part as :meth:`item_file` says. ClError: parts the run cannot embed,
                or parts that cancel out.
        """
        resolved = []
        for modality, item, weight in parts:
            if modality == "id":
                file = self.item_file(item)
                modality = self.searcher.modality
                item = file.read_text(encoding="utf-8").strip() if modality == "text" else file
            resolved.append((modality, item, weight))
        with self.lock:
            return {"hits": self._hits(self.searcher.combine(resolved, k)), "labels": []}

    def item_file(self, item_id: int) -> Path:
        """The file of the indexed item ``item_id``, through the index and :meth:`Searcher.resolve`.

        Raises:
            Problem: 404 for an id the index does not hold, 403 for an entry leading outside the data root.
        """
        from .search import UnsafePathError

        try:
            path = self.searcher.index.path(item_id)
        except KeyError:
            raise Problem(404, f"no item {item_id} in the index") from None
        try:
            return self.searcher.resolve(path)
        except UnsafePathError:
            raise Problem(403, f"item {item_id} is not a file under the data root") from None

    def thumbnail(self, item_id: int) -> bytes:
        """PNG bytes of the thumbnail of item ``item_id`` (cached; see :func:`thumbnail_png`).

        Raises:
            Problem: 404 / 403 as :meth:`item_file` says; 404 when the file cannot be read.
        """
        with self._thumbs_lock:
            cached = self._thumbs.get(item_id)
            if cached is not None:
                self._thumbs.move_to_end(item_id)
                return cached
        file = self.item_file(item_id)
        try:
            png = thumbnail_png(file, self.searcher.modality)
        except Exception:  # noqa: BLE001 - a file gone or unreadable since it was indexed
            raise Problem(404, f"item {item_id}: its file cannot be read") from None
        with self._thumbs_lock:
            self._thumbs[item_id] = png
            while len(self._thumbs) > THUMB_CACHE:
                self._thumbs.popitem(last=False)
        return png

    def _hits(self, hits: Sequence[Any]) -> list[dict[str, Any]]:
        return [{"id": h.id, "score": round(h.score, 6), "path": h.path, "thumb": f"/api/thumb/{h.id}"}
                for h in hits if math.isfinite(h.score)]

    def audio_rate(self) -> int:
        """The sample rate (Hz) the run's audio tower takes: its ``params.sample_rate`` (looked up through a frozen
        wrapper's ``encoder``), else 16 kHz.

        Raises:
            ClError: the run has no audio tower.
        """
        module = self.searcher.pipeline.encoder(self.searcher.query_role("audio"))
        for _ in range(3):
            rate = getattr(getattr(module, "params", None), "sample_rate", None)
            if rate:
                return int(rate)
            module = getattr(module, "encoder", None)
        return 16000


def upload(fields: dict[str, Any], name: str, service: SearchService) -> Any:
    """The decoded upload ``name`` (``image``: a PIL image; ``audio``: samples at the audio tower's rate), or None.

    Raises:
        Problem: 400 when it came as JSON (not a file), 415 / 413 as :func:`decode_image` / :func:`decode_wav` say.
    """
    data = fields.get(name)
    if data is None or data == b"":
        return None
    if not isinstance(data, bytes):
        raise Problem(400, f"{name}: send the file as multipart/form-data")
    if name == "image":
        return decode_image(data)
    samples, rate = decode_wav(data)
    return resample(samples, rate, service.audio_rate())


# -- the app -------------------------------------------------------------------------------------------------------


class _Headers:
    """ASGI middleware adding :data:`HEADERS` to every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items() if k.lower().encode()
                         not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(searcher: Any, *, decoder_runs: Sequence[Any] = (), zero_shot_labels: Sequence[str] | None = None,
               max_upload_bytes: int = 5_000_000, allowed_hosts: Sequence[str] | None = LOOPBACK_HOSTS,
               host: Any = None, device: str = "cpu") -> Any:
    """The search app over ``searcher`` (endpoints: module docstring).

    Args:
        decoder_runs: runs with a [decoder] (folders or Hub ids) that caption image queries; each must share a tower
            with the searched run. host: the plugin host that loads them (default: the installed plugins).
        zero_shot_labels: class names; image and audio queries get their top 5 (:class:`ZeroShot`).
        max_upload_bytes: largest uploaded file (413 beyond).
        allowed_hosts: ``Host`` header values answered (400 otherwise); ``None`` or ``["*"]``: any.

    Raises:
        ClError: FastAPI / uvicorn / python-multipart missing, a decoder run or label list that cannot be used.
    """
    fastapi = web_modules()
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from .plugins import default_host

    if max_upload_bytes < 1:
        raise ClError(f"max_upload_bytes = {max_upload_bytes}: must be at least 1")
    zero_shot = ZeroShot(searcher, zero_shot_labels) if zero_shot_labels is not None else None
    captioners = load_captioners(searcher, decoder_runs, host or default_host(), device)
    service = SearchService(searcher, zero_shot, captioners)
    page = TEMPLATE.read_text(encoding="utf-8")
    info = {"run": Path(str(searcher.index.info.get("run", ""))).name, "items": len(searcher.index),
            "modality": searcher.modality, "query_modalities": searcher.query_modalities,
            "labels": len(zero_shot.labels) if zero_shot else 0, "captions": [name for name, _ in captioners],
            "max_upload_bytes": max_upload_bytes, "max_k": MAX_K}

    app = fastapi.FastAPI(title="cl serve", docs_url=None, redoc_url=None, openapi_url=None)
    if allowed_hosts is not None and "*" not in allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(_Headers)
    app.state.service = service

    @app.exception_handler(Problem)
    async def refused(request: fastapi.Request, exc: Problem) -> Any:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(ClError)
    async def cannot(request: fastapi.Request, exc: ClError) -> Any:
        return JSONResponse({"detail": str(exc).splitlines()[0]}, status_code=400)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> Any:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/api/info")
    async def about() -> Any:
        return info

    @app.post("/api/search")
    async def search(request: fastapi.Request) -> Any:
        start = time.perf_counter()
        fields = await read_fields(request, max_upload_bytes)
        k = whole_k(fields.get("k", 10))
        given = (("text", query_text(fields.get("text"))), ("image", upload(fields, "image", service)),
                 ("audio", upload(fields, "audio", service)))
        queries = [(modality, item) for modality, item in given if item is not None]
        if len(queries) != 1:
            raise Problem(400, "give one query: text, an image or a WAV file (to add several, use /api/combine)")
        out = await run_in_threadpool(service.search, queries[0][0], queries[0][1], k)
        return {**out, "ms": round(1000 * (time.perf_counter() - start), 2)}

    @app.post("/api/combine")
    async def combine(request: fastapi.Request) -> Any:
        start = time.perf_counter()
        fields = await read_fields(request, max_upload_bytes)
        k = whole_k(fields.get("k", 10))
        parts: list[tuple[str, Any, float]] = []
        if fields.get("id") not in (None, "", b""):
            parts.append(("id", parse_item_id(fields["id"]), 1.0))
        for name in ("image", "audio"):
            item = upload(fields, name, service)
            if item is not None:
                parts.append((name, item, 1.0))
        for name, weight in (("text", 1.0), ("minus", -1.0)):
            text = query_text(fields.get(name), name)
            if text is not None:
                parts.append(("text", text, weight))
        if not parts:
            raise Problem(400, "give parts to combine: an image or WAV file, an item id, a text, a text to subtract")
        out = await run_in_threadpool(service.combine, parts, k)
        return {**out, "ms": round(1000 * (time.perf_counter() - start), 2)}

    @app.get("/api/thumb/{item_id}")
    async def thumb(item_id: str) -> Any:
        png = await run_in_threadpool(service.thumbnail, parse_item_id(item_id, status=404))
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    return app


# -- running it ----------------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is a loopback address: only this machine can connect."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0: a free one).

    Raises:
        ClError: the address cannot be bound (in use, not this machine's), one line.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise ClError(f"--host {host}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ClError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another --port?)") from None
    return sock


def make_server(app: Any, sock: socket.socket, *, log_level: str = "warning") -> Any:
    """A ``uvicorn.Server`` for ``app``; ``server.run(sockets=[sock])`` serves until ``server.should_exit``."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False))


class BackgroundServer:
    """``app`` served by uvicorn in a daemon thread, on ``host`` (loopback by default) and ``port`` (0: a free one):
    for tests, benchmarks and notebooks. ``with BackgroundServer(app) as server: ... server.url ...``.

    Raises:
        ClError: the address cannot be bound. RuntimeError: uvicorn did not start within ``timeout`` seconds.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 30.0) -> None:
        self.sock = bind_socket(host, port)
        name, bound = self.sock.getsockname()[:2]
        self.url = f"http://{f'[{name}]' if ':' in name else name}:{bound}"
        self.server = make_server(app, self.sock)
        self.timeout = timeout
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="cl-serve")

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.close()
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving (waits up to ``timeout`` seconds for the thread) and close the socket."""
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(self.timeout)
        self.sock.close()
