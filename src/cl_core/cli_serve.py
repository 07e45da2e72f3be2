"""``cl serve RUN INDEX``: a local search page over an index (:mod:`cl_core.serve`).

Registered on :data:`cl_core.cli.main` by the import at the end of ``cli.py``. User errors print one line and exit 1
(:func:`cl_core.cli.user_errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from . import cli as _cli
from .cli import main, user_errors
from .errors import ClError

#: most lines a --labels file may have
MAX_LABELS = 100_000


def read_labels(path: Path) -> list[str]:
    """The class names of a ``--labels`` file: one per line, blank lines skipped.

    Raises:
        ClError: the file is missing, unreadable, not UTF-8, empty or too long.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClError(f"--labels {path}: no such file") from None
    except UnicodeDecodeError:
        raise ClError(f"--labels {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ClError(f"--labels {path}: {exc.strerror or exc}") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ClError(f"--labels {path}: no class names in it (one per line)")
    if len(labels) > MAX_LABELS:
        raise ClError(f"--labels {path}: {len(labels)} class names; at most {MAX_LABELS}")
    return labels


def _serve(server: Any, sock: Any) -> None:
    """Run ``server`` on ``sock`` until Ctrl-C (a seam for tests)."""
    server.run(sockets=[sock])


@main.command(name="serve")
@click.argument("run", metavar="RUN")
@click.argument("index_dir", metavar="INDEX", type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8000, show_default=True,
              help="TCP port (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback lets other machines search the index and see its "
                   "thumbnails.")
@click.option("--decoder", "decoders", multiple=True, metavar="RUN",
              help="A run with a [decoder] (sharing a tower with RUN) that captions image queries; repeatable.")
@click.option("--labels", type=click.Path(path_type=Path), metavar="FILE",
              help="Class names, one per line: image and audio queries show their 5 most probable (zero-shot).")
@click.option("--max-upload", type=click.IntRange(min=1), default=5_000_000, show_default=True,
              help="Largest uploaded file, in bytes (413 beyond).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, mps or auto.")
@user_errors
def serve_cmd(run: str, index_dir: Path, port: int, host: str, decoders: tuple[str, ...], labels: Path | None,
              max_upload: int, device: str) -> None:
    """Serve a search page over the corpus indexed in INDEX, queried with RUN's encoders: text, an image or a
    sound, embedding arithmetic, thumbnails of the hits. Open the address it prints; Ctrl-C stops it."""
    from . import serve
    from .search import Searcher

    serve.web_modules()  # before any model loads: FastAPI / uvicorn missing is one line
    names = read_labels(labels) if labels is not None else None
    loopback = serve.is_loopback(host)
    if not loopback:
        click.echo(click.style("warning: ", fg="yellow", bold=True) + f"--host {host} is not a loopback address: "
                   "anyone who can reach this machine can search the index and see its files' thumbnails", err=True)
    sock = serve.bind_socket(host, port)
    try:
        searcher = Searcher.open(run, index_dir, device=device, host=_cli._host())
        app = serve.create_app(searcher, decoder_runs=decoders, zero_shot_labels=names, max_upload_bytes=max_upload,
                               allowed_hosts=serve.LOOPBACK_HOSTS if loopback else None, host=_cli._host(),
                               device=device)
        bound, bound_port = sock.getsockname()[:2]
        shown = f"[{bound}]" if ":" in bound else bound
        click.echo(f"serving {len(searcher.index)} {searcher.modality} items of {index_dir} with {run} at "
                   f"http://{shown}:{bound_port}/ (Ctrl-C stops)")
        _serve(serve.make_server(app, sock), sock)
    finally:
        sock.close()
