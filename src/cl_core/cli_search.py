"""``cl embed``, ``cl index build`` and ``cl search``: embed a corpus with a run, index it with FAISS, search it.

Registered on :data:`cl_core.cli.main` by the import at the end of ``cli.py``. User errors print one line (or one
list) and exit 1, as every ``cl`` command does (:func:`cl_core.cli.user_errors`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from . import cli as _cli
from .cli import main, user_errors
from .embedding import MODALITIES


def _device_for_rank(device: str, world_size: int) -> str:
    """``cuda`` under torchrun means this rank's GPU, ``cuda:LOCAL_RANK``."""
    if world_size > 1 and device in ("cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


@main.command(name="embed")
@click.argument("run", metavar="RUN")
@click.argument("more", metavar="[DATA]...", nargs=-1, type=click.Path(path_type=Path))
@click.option("--data", "data", multiple=True, type=click.Path(path_type=Path), metavar="DIR_OR_FILE",
              help="A folder (its files of the modality, recursively) or a file; repeatable. Further DATA arguments "
                   "add to it (a shell glob).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder of the embedding shards.")
@click.option("--modality", type=click.Choice(list(MODALITIES)), default="image", show_default=True,
              help="What the files are: images, WAV files, or .txt files (one text each).")
@click.option("--role", help="Encoder role that embeds the files; default: as `cl caption` chooses it.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Items per batch.")
@click.option("--shard-size", type=click.IntRange(min=1), default=10000, show_default=True,
              help="Items per output shard: the unit of resumption and of splitting over torchrun ranks.")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda, mps or auto (under torchrun, cuda is each rank's LOCAL_RANK GPU).")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable files (counted in the manifest) instead of stopping.")
@user_errors
def embed_cmd(run: str, more: tuple[Path, ...], data: tuple[Path, ...], out: Path, modality: str, role: str | None,
              batch_size: int, shard_size: int, device: str, skip_bad: bool) -> None:
    """Embed the files of a corpus with RUN's encoder into L2-normalised safetensors shards in --out.

    Resumable: run it again after a stop and the finished shards are kept. Under torchrun each rank (RANK of
    WORLD_SIZE) embeds its own shards; `cl index build` indexes the folder once every rank is done.
    """
    from .embedding import embed_corpus, rank_from_env

    rank, world = rank_from_env()
    paths = [*data, *more]
    if not paths:
        raise click.UsageError("give the data: --data DIR_OR_FILE (or files after RUN)")
    prefix = f"[rank {rank}/{world}] " if world > 1 else ""
    result = embed_corpus(run, modality, paths, out, role=role, batch_size=batch_size, shard_size=shard_size,
                          device=_device_for_rank(device, world), rank=rank, world_size=world, skip_bad=skip_bad,
                          host=_cli._host(), log=lambda m: click.echo(prefix + m))
    for message in result.skipped:
        click.echo(click.style("skipped: ", fg="yellow") + message, err=True)
    manifest = result.manifest
    state = ("complete" if manifest["complete"]
             else f"{manifest['shards_done']} of {manifest['shards']} shards done (the others are other ranks')")
    click.echo(f"{prefix}{out}: {len(result.written)} shard(s) embedded now ({result.items} items), "
               f"{len(result.reused)} already done; {manifest['embedded']} of {manifest['files']} files embedded, "
               f"{manifest['skipped']} skipped; {state}")


@main.group(name="index")
def index_group() -> None:
    """Build FAISS indexes of embedded corpora (pip install "cl-core[index]")."""


@index_group.command(name="build")
@click.argument("emb", metavar="EMB", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Index folder; default: EMB/index.")
@click.option("--kind", type=click.Choice(["flat", "ivf", "hnsw"]), default="flat", show_default=True,
              help="flat: exact; ivf: inverted lists (k-means cells); hnsw: a neighbour graph.")
@click.option("--nlist", type=click.IntRange(min=1), help="IVF: number of cells; default about 4 sqrt(N).")
@click.option("--nprobe", type=click.IntRange(min=1), help="IVF: cells searched per query; default 16.")
@click.option("--m", "m", type=click.IntRange(min=1), help="HNSW: links per node; default 32.")
@click.option("--ef-search", type=click.IntRange(min=1), help="HNSW: search beam width; default 64.")
@click.option("--ef-construction", type=click.IntRange(min=1), help="HNSW: build beam width; default 40.")
@click.option("--force", is_flag=True, help="Rebuild even when the index is up to date.")
@user_errors
def index_build(emb: Path, out: Path | None, kind: str, nlist: int | None, nprobe: int | None, m: int | None,
                ef_search: int | None, ef_construction: int | None, force: bool) -> None:
    """Index the embeddings `cl embed` wrote to EMB, by cosine similarity. Nothing is rebuilt unless the model or
    the data changed (or --force, or another --kind / structure parameter)."""
    from .index import build_index

    result = build_index(emb, out or emb / "index", kind=kind, nlist=nlist, nprobe=nprobe, m=m, ef_search=ef_search,
                         ef_construction=ef_construction, force=force, log=click.echo)
    click.echo(f"{out or emb / 'index'}: {result.message}")


@main.command(name="search")
@click.argument("run", metavar="RUN")
@click.argument("index_dir", metavar="INDEX", type=click.Path(path_type=Path))
@click.option("--text", help="A text query.")
@click.option("--image", type=click.Path(path_type=Path), help="An image file as the query.")
@click.option("--audio", type=click.Path(path_type=Path), help="A WAV file as the query (a run with an audio tower).")
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Results to show.")
@click.option("--nprobe", type=click.IntRange(min=1), help="IVF: cells searched (default: the index's).")
@click.option("--ef-search", type=click.IntRange(min=1), help="HNSW: search beam width (default: the index's).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, mps or auto.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {rank, id, score, path, file}.")
@user_errors
def search_cmd(run: str, index_dir: Path, text: str | None, image: Path | None, audio: Path | None, k: int,
               nprobe: int | None, ef_search: int | None, device: str, as_json: bool) -> None:
    """Search the corpus indexed in INDEX with a query embedded by RUN: --text, --image or --audio (several are
    added, embedding arithmetic). Prints rank, cosine score and file of the K nearest items."""
    from .index import set_search_params
    from .search import Searcher

    if text is None and image is None and audio is None:
        raise click.UsageError("give a query: --text, --image or --audio")
    searcher = Searcher.open(run, index_dir, device=device, host=_cli._host())
    set_search_params(searcher.index.faiss_index, searcher.index.kind, nprobe=nprobe, ef_search=ef_search)
    hits = searcher.query(text=text, image=image, audio=audio, k=k)
    root = searcher.root
    if as_json:
        rows = [{"rank": r, "id": h.id, "score": round(h.score, 6), "path": h.path, "file": str(root / h.path)}
                for r, h in enumerate(hits, 1)]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    width = len(str(len(hits)))
    for r, hit in enumerate(hits, 1):
        click.echo(f"{r:>{width}}  {hit.score:.4f}  {root / hit.path}")
