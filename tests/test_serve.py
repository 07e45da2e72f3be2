"""``cl serve``: the search app's endpoints and security rules (FastAPI's TestClient), its command line, and the page
end to end in Debian's headless Chromium (selenium) over a real uvicorn server.

The run and the corpus are those of ``tests/test_embed_index_search.py`` (colour squares captioned "<colour> square",
a mean-colour image tower, ``toy.chars`` as the text tower); a decoder run (``toy.char-decoder`` over that run's
frozen image tower, via ``core.from-run``) captions image queries.

Screenshots are compared with the references in ``tests/fixtures/serve/`` (under 2% of the pixels may differ by
more than 32 levels); ``CL_UPDATE_SCREENSHOTS=1`` rewrites them and ``docs/images/serve.png``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import shutil
import socket
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cl_core import cli
from cl_core.testing import squares
from cl_core.testing.squares import square, write_squares

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("faiss")
PIL = pytest.importorskip("PIL.Image")


FIXTURES = Path(__file__).parent / "fixtures" / "serve"
DOCS_IMAGE = Path(__file__).parents[1] / "docs" / "images" / "serve.png"
LABELS = ["red square", "green square", "blue square", "black square", "white circle", "yellow star"]

DECODER_SPEC = """
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "squares-captions"
[data]
type = "squares.images"
heldout = 0
[sampler]
type = "core.in-batch"
batch_size = 16
[encoders.image]
type = "core.from-run"
source = "{source}"
[decoder]
type = "toy.char-decoder"
embed_dim = 8
[[objective]]
type = "core.caption"
condition = "image"
[trainer]
epochs = 24
lr = 0.02
progress = false
plots = false
"""


# -- the run, the corpus, the index ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host():
    return squares.plugin_host()


@pytest.fixture(scope="module")
def run(host, tmp_path_factory) -> Path:
    """The colour-squares CLIP of ``cl_core.testing.squares``, trained in-process (a few seconds)."""
    return squares.train_run(squares.CLIP_SPEC, tmp_path_factory.mktemp("serve-run"), host)


@pytest.fixture(scope="module")
def decoder_run(run, host, tmp_path_factory) -> Path:
    """A captioner trained over ``run``'s frozen image tower (so it shares that tower with ``run``)."""
    from cl_core.runs import train

    folder = tmp_path_factory.mktemp("serve-decoder")
    spec = folder / "captions.toml"
    spec.write_text(DECODER_SPEC.format(out=folder / "runs", source=run))
    train(spec, host=host, log=lambda m: None)
    return folder / "runs" / "squares-captions"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_squares(tmp_path_factory.mktemp("serve-data") / "corpus")


@pytest.fixture(scope="module")
def index(run, corpus, host, tmp_path_factory) -> Path:
    from cl_core.embedding import embed_corpus
    from cl_core.index import build_index

    folder = tmp_path_factory.mktemp("serve-index")
    embed_corpus(run, "image", corpus, folder / "emb", host=host, shard_size=5)
    build_index(folder / "emb", folder / "idx")
    return folder / "idx"


@pytest.fixture(scope="module")
def searcher(run, index, host):
    from cl_core.search import Searcher

    return Searcher.open(run, index, host=host)


@pytest.fixture(scope="module")
def app(searcher, decoder_run, host):
    from cl_core.serve import create_app

    return create_app(searcher, decoder_runs=[decoder_run], zero_shot_labels=LABELS, host=host)


def _client(app: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def client(app):
    return _client(app)


def _png(colour: str, seed: int = 5, fmt: str = "PNG", size: int = 8) -> bytes:
    image = square(colour, np.random.default_rng(seed))
    if size != 8:
        image = image.resize((size, size))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def _wav(samples: np.ndarray, rate: int = 16000, width: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 2:
            w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
        else:
            w.writeframes((np.clip(samples, -1, 1) * 127 + 128).astype(np.uint8).tobytes())
    return out.getvalue()


def _rows(hits: list[Any]) -> list[tuple[int, float]]:
    return [(h.id, round(h.score, 6)) for h in hits]


def _answer(body: dict[str, Any]) -> list[tuple[int, float]]:
    return [(h["id"], h["score"]) for h in body["hits"]]


# -- the API --------------------------------------------------------------------------------------------------------


def test_the_page_and_what_it_is_told(client, searcher):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>cl search</title>" in page.text and 'id="results"' in page.text
    assert page.headers["x-content-type-options"] == "nosniff" and "frame-ancestors 'none'" in page.headers[
        "content-security-policy"]
    info = client.get("/api/info").json()
    assert info == {"run": "squares", "items": 12, "modality": "image", "query_modalities": ["image", "text"],
                    "labels": len(LABELS), "captions": ["squares-captions"], "max_upload_bytes": 5_000_000,
                    "max_k": 100}
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404


def test_a_text_query_answers_what_the_searcher_finds(client, searcher):
    response = client.post("/api/search", json={"text": "red square", "k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert _answer(body) == _rows(searcher.query(text="red square", k=3))
    assert [Path(h["path"]).name.split("-")[0] for h in body["hits"]] == ["red"] * 3
    assert [h["thumb"] for h in body["hits"]] == [f"/api/thumb/{h['id']}" for h in body["hits"]]
    assert body["labels"] == [] and "caption" not in body and body["ms"] > 0
    assert len(client.post("/api/search", json={"text": "blue square"}).json()["hits"]) == 10  # k: 10 by default
    for bad, status in (({"text": ""}, 400), ({"text": "red", "k": 0}, 400), ({"text": "red", "k": 101}, 400),
                        ({"text": "red", "k": "many"}, 400), ({"text": 7}, 400), ({"text": "x" * 1001}, 413),
                        ({}, 400), ([1, 2], 400)):
        response = client.post("/api/search", json=bad)
        assert response.status_code == status, (bad, response.text)
        assert isinstance(response.json()["detail"], str)
    assert client.post("/api/search", content=b"{not json", headers={"content-type": "application/json"}
                       ).status_code == 400


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_an_uploaded_image_is_searched_labelled_and_captioned(fmt, client, searcher, decoder_run, host):
    from cl_core.weights import from_pretrained

    data = _png("blue", fmt=fmt)
    response = client.post("/api/search", files={"image": ("q", data, "application/octet-stream")},
                           data={"k": "4"})
    assert response.status_code == 200, response.text
    body = response.json()
    image = PIL.open(io.BytesIO(data)).convert("RGB")
    assert _answer(body) == _rows(searcher.query(image=image, k=4))
    assert Path(body["hits"][0]["path"]).name.startswith("blue")
    labels = body["labels"]
    assert len(labels) == 5 and labels[0]["label"] == "blue square"
    assert [row["p"] for row in labels] == sorted((row["p"] for row in labels), reverse=True)
    assert 0 < sum(row["p"] for row in labels) <= 1 + 1e-5
    captioner = from_pretrained(decoder_run, host=host)
    assert body["caption"] == captioner.caption("image", [image])[0] == "blue square"
    assert body["captions"] == [{"decoder": "squares-captions", "text": "blue square"}]


def test_zero_shot_probabilities_use_the_scorers_logit_scale(searcher):
    from cl_core.serve import ZeroShot

    zero_shot = ZeroShot(searcher, ["  ", *LABELS, ""])
    assert zero_shot.labels == LABELS and zero_shot.scale("image") == pytest.approx(10.0)  # temperature 0.1
    vector = searcher.embed("image", PIL.open(io.BytesIO(_png("red"))))
    text = searcher.pipeline.embed("text", LABELS).numpy()
    logits = 10.0 * (text / np.linalg.norm(text, axis=1, keepdims=True)) @ vector
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    top = zero_shot.top(vector, "image")
    assert [row["label"] for row in top] == [LABELS[i] for i in np.argsort(-p)[:5]]
    assert [row["p"] for row in top] == pytest.approx(np.sort(p)[::-1][:5], abs=1e-5)
    from cl_core.errors import ClError

    with pytest.raises(ClError, match="label list is empty"):
        ZeroShot(searcher, ["", " "])


def test_embedding_arithmetic(client, searcher, corpus):
    red = corpus / "red-0.png"
    ids = {path: i for i, path in enumerate(searcher.index.paths)}
    response = client.post("/api/combine", json={"id": ids["red-0.png"], "text": "blue square", "k": 12})
    assert response.status_code == 200, response.text
    expected = searcher.combine([("image", red), ("text", "blue square")], k=12)
    assert _answer(response.json()) == _rows(expected)

    response = client.post("/api/combine", files={"image": ("q", red.read_bytes())},
                           data={"text": "blue square", "minus": "red square", "k": "5"})
    assert response.status_code == 200, response.text
    image = PIL.open(red).convert("RGB")
    expected = searcher.combine([("image", image), ("text", "blue square"), ("text", "red square", -1.0)], k=5)
    assert _answer(response.json()) == _rows(expected)
    assert Path(response.json()["hits"][0]["path"]).name.startswith("blue")

    assert client.post("/api/combine", json={"text": "blue square", "minus": "blue square"}).status_code == 400
    assert "cancel out" in client.post("/api/combine", json={"text": "blue square", "minus": "blue square"}
                                       ).json()["detail"]
    assert client.post("/api/combine", json={"k": 3}).status_code == 400
    assert client.post("/api/combine", json={"id": 999}).status_code == 404
    for bad in ("../../etc/passwd", "/etc/passwd", "-1", "1.5", True):
        assert client.post("/api/combine", json={"id": bad}).status_code == 400, bad


def test_thumbnails_only_for_ids_in_the_index(client, searcher, corpus):
    for item_id, path in enumerate(searcher.index.paths):
        response = client.get(f"/api/thumb/{item_id}")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        thumb = PIL.open(io.BytesIO(response.content))
        assert thumb.format == "PNG" and thumb.size == (96, 96)  # 8 px squares, enlarged 12 times
        source = PIL.open(corpus / path).convert("RGB")
        assert thumb.convert("RGB").getpixel((5, 5)) == source.getpixel((0, 0))
    for item_id in ("12", "999", "-1", "abc", "1e3", "%2e%2e%2fetc%2fpasswd", "..%2f..%2fetc%2fpasswd",
                    "0x1", " 1"):
        response = client.get(f"/api/thumb/{item_id}")
        assert response.status_code == 404, (item_id, response.text)
        assert b"root:" not in response.content
    assert client.get("/api/thumb/../../etc/passwd").status_code == 404


def test_an_index_whose_items_lead_out_of_the_data_root_serves_no_such_file(run, index, host, tmp_path):
    from cl_core.search import Searcher
    from cl_core.serve import create_app

    tampered = tmp_path / "idx"
    shutil.copytree(index, tampered)
    items = json.loads((tampered / "items.json").read_text())
    real = items["paths"][1]
    items["paths"][0] = "../../etc/passwd"
    items["paths"][1] = "/etc/passwd"
    items["paths"][2] = "../" * 12 + "etc/passwd"
    (tampered / "items.json").write_text(json.dumps(items))
    client = _client(create_app(Searcher.open(run, tampered, host=host), host=host))
    for item_id in (0, 1, 2):
        response = client.get(f"/api/thumb/{item_id}")
        assert response.status_code == 403 and b"root:" not in response.content, response.text
        assert client.post("/api/combine", json={"id": item_id}).status_code == 403
    assert client.get("/api/thumb/3").status_code == 200 and real != "/etc/passwd"


def test_uploads_are_capped_while_the_body_is_read(searcher, host):
    from cl_core.serve import create_app
    from cl_core.serve_requests import FORM_OVERHEAD, JSON_LIMIT

    app = create_app(searcher, max_upload_bytes=2000, host=host)
    client = _client(app)
    small = _png("red")
    noisy = io.BytesIO()
    PIL.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(noisy, "PNG")
    assert len(small) < 2000 < len(noisy.getvalue()) < 2000 + FORM_OVERHEAD
    assert client.post("/api/search", files={"image": ("q", small)}).status_code == 200
    response = client.post("/api/search", files={"image": ("q", noisy.getvalue())})
    assert response.status_code == 413 and "limit is 2000" in response.json()["detail"]
    assert client.post("/api/search", files={"image": ("q", b"\0" * (2000 + FORM_OVERHEAD))}).status_code == 413
    assert client.post("/api/search", json={"text": "red " * (JSON_LIMIT // 4)}).status_code == 413
    response = client.post("/api/search", content=b"x", headers={"content-type": "application/json",
                                                                 "content-length": str(10**12)})
    assert response.status_code == 413

    # an endless body, streamed without a Content-Length: refused after the limit, not read to its end
    sent: list[int] = []

    async def endless() -> dict[str, Any]:
        sent.append(64 * 1024)
        return {"type": "http.request", "body": b"\0" * (64 * 1024), "more_body": True}

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/search", "raw_path": b"/api/search", "query_string": b"",
             "root_path": "", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"multipart/form-data; boundary=x"),
                         (b"transfer-encoding", b"chunked")]}
    asyncio.run(asyncio.wait_for(app(scope, endless, send), 30))
    assert messages[0]["type"] == "http.response.start" and messages[0]["status"] == 413
    assert sum(sent) <= 2000 + FORM_OVERHEAD + 64 * 1024


def test_pixels_are_capped_before_decoding(client, monkeypatch):
    from cl_core import serve_requests

    monkeypatch.setattr(serve_requests, "MAX_PIXELS", 63 * 63)
    response = client.post("/api/search", files={"image": ("q", _png("red", size=64))})
    assert response.status_code == 413 and "64 x 64 pixels" in response.json()["detail"]


def test_uploads_must_be_an_allowed_image_or_a_wav_file(client, tmp_path):
    bmp = _png("red", fmt="BMP")
    tiff = _png("red", fmt="TIFF")
    truncated = _png("red")[:40]
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    for data in (b"not an image", bmp, tiff, truncated, svg, b"", _wav(np.zeros(100)), b"GIF89a" + b"\0" * 10):
        response = client.post("/api/search", files={"image": ("q.png", data, "image/png")})
        expected = 400 if data == b"" else 415  # an empty part is no query at all
        assert response.status_code == expected, (data[:12], response.text)
    for data in (b"RIFF\0\0\0\0WAVEjunk", _png("red"), b"not a sound"):
        response = client.post("/api/search", files={"audio": ("q.wav", data, "audio/wav")})
        assert response.status_code == 415, (data[:12], response.text)
    response = client.post("/api/search", files={"audio": ("q.wav", _wav(np.zeros(1600) + 0.1))})
    assert response.status_code == 400 and "no single encoder of audio" in response.json()["detail"]
    for kind in ("text/plain", "application/x-www-form-urlencoded", "image/png", ""):
        response = client.post("/api/search", content=b"text=red", headers={"content-type": kind})
        assert response.status_code == 415, kind
    response = client.post("/api/search", files={"image": ("q", _png("red"))}, data={"text": "red square"})
    assert response.status_code == 400 and "one query" in response.json()["detail"]


def test_nothing_a_client_sends_is_used_as_a_path(client, searcher, monkeypatch, tmp_path):
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an upload touched the disk")

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr("starlette.formparsers.SpooledTemporaryFile", refuse, raising=False)
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.rglob("*"))
    large = io.BytesIO()  # over Starlette's 1 MB spooling threshold
    PIL.fromarray(np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(large, "PNG")
    assert 1_100_000 < len(large.getvalue()) < 5_000_000
    for name in ("../../../../tmp/evil.png", "/etc/passwd", "x"):
        response = client.post("/api/search", files={"image": (name, large.getvalue(), "image/png")})
        assert response.status_code == 200, response.text
    assert set(tmp_path.rglob("*")) == before and not Path("/tmp/evil.png").exists()
    assert client.post("/api/search", json={"image": "/etc/passwd"}).status_code == 400
    assert client.post("/api/search", json={"audio": str(searcher.root / "red-0.png")}).status_code == 400
    response = client.post("/api/search", json={"text": "red square", "path": "/etc/passwd", "file": "/etc"})
    assert response.status_code == 200  # unknown fields are ignored


def test_only_requests_to_a_loopback_name_are_answered(client):
    assert client.get("/api/info", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/api/info", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/api/info", headers={"host": "127.0.0.1:8000"}).status_code == 200


def test_wav_decoding_and_thumbnails_of_other_modalities(tmp_path):
    from cl_core.serve import thumbnail_png
    from cl_core.serve_requests import Problem, decode_wav, resample

    tone = np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440).astype(np.float32) * 0.5
    for width in (1, 2):
        samples, rate = decode_wav(_wav(tone, rate=8000, width=width))
        assert rate == 8000 and samples.dtype == np.float32 and np.abs(samples - tone).max() < 0.02
    up = resample(tone, 8000, 16000)
    assert up.shape == (16000,) and np.abs(up[::2] - tone).max() < 1e-5 and resample(tone, 8000, 8000) is tone
    with pytest.raises(Problem) as refused:
        decode_wav(_wav(np.zeros(0)))
    assert refused.value.status == 415
    (tmp_path / "a.wav").write_bytes(_wav(tone))
    wave_png = PIL.open(io.BytesIO(thumbnail_png(tmp_path / "a.wav", "audio")))
    assert wave_png.size == (96, 48) and len(np.unique(np.asarray(wave_png).reshape(-1, 3), axis=0)) > 1
    (tmp_path / "a.txt").write_text("a red square on a white page")
    assert PIL.open(io.BytesIO(thumbnail_png(tmp_path / "a.txt", "text"))).size == (96, 48)
    big = PIL.new("RGBA", (400, 200), (255, 0, 0, 0))
    big.save(tmp_path / "big.png")
    small = PIL.open(io.BytesIO(thumbnail_png(tmp_path / "big.png", "image")))
    assert small.size == (96, 48) and small.getpixel((3, 3)) == (255, 255, 255)  # transparency over white


# -- the command line -----------------------------------------------------------------------------------------------


def invoke(host, monkeypatch, *args) -> Any:
    monkeypatch.setattr(cli, "_host", lambda: host)
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def test_cl_serve_serves_on_loopback_and_warns_otherwise(run, index, host, monkeypatch, tmp_path):
    from cl_core import cli_serve, serve

    served: list[tuple[Any, Any]] = []
    monkeypatch.setattr(cli_serve, "_serve", lambda server, sock: served.append((server, sock.getsockname())))
    labels = tmp_path / "labels.txt"
    labels.write_text("red square\n\nblue square\n")
    result = invoke(host, monkeypatch, "serve", run, index, "--port", "0", "--labels", labels)
    assert result.exit_code == 0, result.output
    server, (address, port) = served[0]
    assert address == "127.0.0.1" and port > 0 and f"at http://127.0.0.1:{port}/" in result.output
    assert "warning" not in result.output
    service = server.config.app.state.service
    assert service.zero_shot.labels == ["red square", "blue square"] and service.captioners == []

    result = invoke(host, monkeypatch, "serve", run, index, "--port", "0", "--host", "0.0.0.0")
    assert result.exit_code == 0, result.output
    assert "warning: --host 0.0.0.0 is not a loopback address" in result.output
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("::1") and serve.is_loopback("localhost")
    assert serve.is_loopback("127.8.0.1") and not serve.is_loopback("0.0.0.0") and not serve.is_loopback("::")
    assert not serve.is_loopback("192.168.1.4") and not serve.is_loopback("example.com")


def test_cl_serve_user_errors_are_one_clean_line(run, index, host, monkeypatch, tmp_path):
    from cl_core import cli_serve

    monkeypatch.setattr(cli_serve, "_serve", lambda server, sock: None)

    def fails(*args: Any) -> str:
        result = invoke(host, monkeypatch, *args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and result.output.startswith("error: "), result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        return result.output

    assert f"--labels {tmp_path / 'none.txt'}: no such file" in fails("serve", run, index, "--labels",
                                                                     tmp_path / "none.txt")
    (tmp_path / "empty.txt").write_text("\n \n")
    assert "no class names" in fails("serve", run, index, "--labels", tmp_path / "empty.txt")
    assert "not an index" in fails("serve", run, tmp_path, "--port", "0")
    assert "has no [decoder]" in fails("serve", run, index, "--port", "0", "--decoder", run)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert f"cannot listen on 127.0.0.1:{port}" in fails("serve", run, index, "--port", port)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # FastAPI not installed
    out = fails("serve", run, index)
    assert out.strip() == 'error: cl serve needs FastAPI, uvicorn and python-multipart: pip install "cl-core[serve]"'


# -- the page in headless Chromium ----------------------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
_BROWSER_MISSING = ("headless Chromium is not installed (apt-get install chromium chromium-driver; "
                    "scripts/setup-env.sh does it as root)"
                    if not (CHROMIUM.exists() and CHROMEDRIVER.exists())
                    else "selenium is not installed (pip install -e '.[testing]')"
                    if importlib.util.find_spec("selenium") is None else None)
browser = pytest.mark.skipif(_BROWSER_MISSING is not None, reason=_BROWSER_MISSING or "")


def chromium_driver() -> Any:
    """Debian's Chromium, headless, at 1000 x 800 and device scale 1 (deterministic screenshots)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,800",
                 "--force-device-scale-factor=1", "--hide-scrollbars", "--force-color-profile=srgb",
                 "--disable-dev-shm-usage", "--font-render-hinting=none", "--disable-lcd-text"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def page(app):
    """(driver, live server): the page open in headless Chromium, over uvicorn."""
    from cl_core.serve import BackgroundServer

    with BackgroundServer(app) as server:
        driver = chromium_driver()
        try:
            driver.get(server.url + "/")
            wait_for(driver, "return document.body.dataset.ready === '1'")
            yield driver, server
        finally:
            driver.quit()


def fresh(page: Any) -> Any:
    """The driver, on the page just loaded (no query yet): each test starts from the same page."""
    driver, server = page
    driver.get(server.url + "/")
    wait_for(driver, "return document.body.dataset.ready === '1'")
    return driver


def wait_for(driver: Any, script: str, timeout: float = 30) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(lambda d: d.execute_script(script))


def seq(driver: Any) -> int:
    return int(driver.execute_script("return window.clLast ? window.clLast.seq : 0"))


def finished(driver: Any, before: int) -> dict[str, Any]:
    """``window.clLast`` once a query after ``before`` is drawn and its thumbnails loaded."""
    wait_for(driver, f"return window.clLast && window.clLast.seq > {before} && "
                     "(window.clLast.ok === false || window.clLast.thumbsMs !== null) && !document.body.dataset.busy")
    return driver.execute_script("return window.clLast")


def shown(driver: Any) -> list[tuple[int, str, bool]]:
    """Each result card's (item id, score text, thumbnail loaded and its URL the card's id's)."""
    return [tuple(row) for row in driver.execute_script("""
        return [...document.querySelectorAll('#results .hit')].map(card => {
          const img = card.querySelector('img');
          return [parseInt(card.dataset.id, 10), card.querySelector('.score').textContent,
                  img.complete && img.naturalWidth === 96 &&
                  new URL(img.src).pathname === '/api/thumb/' + card.dataset.id];
        });""")]


def expected_cards(body: dict[str, Any]) -> list[tuple[int, str, bool]]:
    return [(h["id"], f"{h['score']:.3f}", True) for h in body["hits"]]


def check_screenshot(driver: Any, name: str, *, docs: bool = False) -> None:
    """Compare a screenshot (the status line, which shows timings, hidden) with ``tests/fixtures/serve/<name>``:
    under 2% of the pixels may differ by more than 32 levels in a channel. ``CL_UPDATE_SCREENSHOTS=1`` writes the
    reference instead (and ``docs/images/serve.png`` when ``docs``)."""
    driver.execute_script("document.getElementById('status').style.visibility = 'hidden';"
                          "document.activeElement && document.activeElement.blur();")
    png = driver.get_screenshot_as_png()
    driver.execute_script("document.getElementById('status').style.visibility = '';")
    reference = FIXTURES / name
    if os.environ.get("CL_UPDATE_SCREENSHOTS") == "1":
        reference.parent.mkdir(parents=True, exist_ok=True)
        reference.write_bytes(png)
        if docs:
            DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
            DOCS_IMAGE.write_bytes(png)
        return
    assert reference.is_file(), f"no reference {reference}: run the test once with CL_UPDATE_SCREENSHOTS=1"
    got = np.asarray(PIL.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    want = np.asarray(PIL.open(reference).convert("RGB"), dtype=np.int16)
    assert got.shape == want.shape, f"screenshot {got.shape[:2]} against the reference's {want.shape[:2]}"
    differ = float((np.abs(got - want).max(axis=2) > 32).mean())
    if differ >= 0.02:
        actual = Path(tempfile.gettempdir()) / f"cl-serve-{name}"
        actual.write_bytes(png)
        pytest.fail(f"{name}: {differ:.1%} of the pixels differ from the reference (tolerance 2%); this run's "
                    f"screenshot: {actual}")


@browser
def test_the_page_searches_text_and_draws_what_the_api_answers(page, client, capsys):
    from selenium.webdriver.common.by import By

    driver = fresh(page)
    assert driver.find_element(By.ID, "about").text == "squares · 12 image items · queries: image, text"
    query = driver.find_element(By.ID, "q")
    timings = []
    for text in ("green square", "red square"):
        query.clear()
        query.send_keys(text)
        before = seq(driver)
        driver.find_element(By.ID, "search").click()
        last = finished(driver, before)
        assert last["ok"], last
        body = client.post("/api/search", json={"text": text, "k": 12}).json()
        assert shown(driver) == expected_cards(body)
        assert [h["id"] for h in last["hits"]] == [h["id"] for h in body["hits"]]
        timings.append(last["drawnMs"])
    assert driver.find_element(By.ID, "labels-box").get_attribute("class") == "box hidden"  # text: no labels
    names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#results .name")]
    assert [n.split("/")[-1].split("-")[0] for n in names[:3]] == ["red"] * 3
    status = driver.find_element(By.ID, "status").text
    assert status.startswith("12 results · ") and " ms on the server" in status
    with capsys.disabled():
        print(f"\n[serve] browser submit -> results drawn, text query: {', '.join(f'{t:.1f}' for t in timings)} ms")
    check_screenshot(driver, "text-search.png")


@browser
def test_the_page_uploads_an_image_and_shows_labels_and_caption(page, client, tmp_path):
    from selenium.webdriver.common.by import By

    driver = fresh(page)
    picture = tmp_path / "query.png"
    picture.write_bytes(_png("blue"))
    before = seq(driver)
    driver.find_element(By.ID, "file").send_keys(str(picture))
    last = finished(driver, before)
    assert last["ok"], last
    body = client.post("/api/search", files={"image": ("q", picture.read_bytes())}, data={"k": "12"}).json()
    assert shown(driver) == expected_cards(body)
    assert driver.find_element(By.ID, "caption").text == body["caption"] == "blue square"
    labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#labels li .label")]
    assert labels == [row["label"] for row in body["labels"]] and labels[0] == "blue square"
    assert driver.execute_script("return document.getElementById('preview').naturalWidth") == 8
    check_screenshot(driver, "image-search.png", docs=True)

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image at all")
    before = seq(driver)
    driver.find_element(By.ID, "file").send_keys(str(bad))
    last = finished(driver, before)
    assert last["ok"] is False and last["status"] == 415
    assert driver.find_element(By.ID, "error").text.startswith("415: not a PNG, JPEG, GIF or WEBP image")


@browser
def test_the_page_does_embedding_arithmetic(page, client, corpus):
    from selenium.webdriver.common.by import By

    driver = fresh(page)
    query = driver.find_element(By.ID, "q")
    query.clear()
    query.send_keys("red square")
    before = seq(driver)
    driver.find_element(By.ID, "search").click()
    first = finished(driver, before)["hits"][0]
    driver.find_element(By.CSS_SELECTOR, "#results .hit .use").click()  # start from the first result
    assert driver.find_element(By.ID, "base").text == f"item: {first['path']}"
    driver.find_element(By.ID, "plus").send_keys("blue square")
    before = seq(driver)
    driver.find_element(By.ID, "combine").click()
    last = finished(driver, before)
    assert last["ok"], last
    body = client.post("/api/combine", json={"id": first["id"], "text": "blue square", "k": 12}).json()
    assert shown(driver) == expected_cards(body)
    check_screenshot(driver, "arithmetic.png")

    driver.find_element(By.ID, "combine-file").send_keys(str(corpus / "green-0.png"))  # a file replaces the item
    driver.find_element(By.ID, "minus").send_keys("green square")
    before = seq(driver)
    driver.find_element(By.ID, "combine").click()
    last = finished(driver, before)
    assert last["ok"], last
    body = client.post("/api/combine", files={"image": ("q", (corpus / "green-0.png").read_bytes())},
                       data={"text": "blue square", "minus": "green square", "k": "12"}).json()
    assert shown(driver) == expected_cards(body)


@pytest.mark.parametrize("bad", [float("inf"), 2.7, True, "many", None, 0, 10**9])
def test_k_must_be_a_whole_number_in_range(bad):
    from cl_core.serve_requests import Problem, whole_k

    with pytest.raises(Problem) as info:
        whole_k(bad)
    assert info.value.status == 400
    assert whole_k(3) == 3 and whole_k(3.0) == 3 and whole_k("4") == 4
