"""``cl data shard``: WebDataset shards of a data source (the writer is ``cl_datasets.shards``, from cl-datasets)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import click

from .cli import _fail, main, user_errors
from .errors import ClError


@main.group()
def data() -> None:
    """Prepare data: shards for streaming."""


def _dataset(images: Path | None, captions: Path | None, spec: Path | None, holdout: float | None,
             skip_bad: bool):
    from .standalone import build

    if spec is not None:
        if images is not None or captions is not None:
            _fail("give --spec or --images with --captions, not both")
        try:
            table = dict(tomllib.loads(spec.read_text()).get("data") or {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ClError(f"{spec}: cannot read the spec ({exc})") from None
        if "type" not in table:
            raise ClError(f"{spec}: no [data] table with a type to shard")
        kind = table.pop("type")
        return build("dataset", kind, **table)
    if images is None or captions is None:
        _fail("give --images DIR and --captions FILE (JSONL or CSV), or --spec SPEC.toml")
    for option, path, kind in (("--images", images, "folder"), ("--captions", captions, "file")):
        if not path.exists():
            _fail(f"{option} {path}: no such {kind}")
    params: dict = {"images_dir": str(images), "captions": str(captions), "skip_bad": skip_bad}
    if holdout is not None:
        params["holdout"] = holdout
    return build("dataset", "datasets.image-caption", **params)


@data.command()
@click.option("--images", type=click.Path(path_type=Path), help="Folder of images (with --captions).")
@click.option("--captions", type=click.Path(path_type=Path), help="JSONL or CSV captions file: image, caption[, label].")
@click.option("--spec", "spec", type=click.Path(path_type=Path),
              help="Shard the [data] of a spec instead (any dataset: emoji pairs, audio pairs, text pairs).")
@click.option("--holdout", type=click.FloatRange(0, 1, max_open=True),
              help="Fraction of labels (or images) held out (with --images; default the dataset's 0.2).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the shards and shards.json.")
@click.option("--shard-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Examples per shard.")
@click.option("--skip-bad", is_flag=True, help="Skip (and count) missing or unreadable images instead of stopping "
                                               "(with --images).")
@user_errors
def shard(images: Path | None, captions: Path | None, spec: Path | None, holdout: float | None, out: Path,
          shard_size: int, skip_bad: bool) -> None:
    """Write every split of a dataset as WebDataset tar shards (train it with datasets.shards + datasets.stream)."""
    if "://" in str(out) or str(out).startswith(("http:/", "https:/")):
        _fail(f"--out {out}: shards are written to a local folder; copy it to your server afterwards (datasets.shards "
              "reads it back from the URL)")
    if out.exists() and not out.is_dir():
        _fail(f"--out {out}: a file is there; give a folder for the shards and shards.json")
    try:
        from cl_datasets.shards import write_shards
    except ImportError:
        _fail("cl data shard needs cl-datasets (and webdataset): pip install cl-datasets")
    try:
        dataset = _dataset(images, captions, spec, holdout, skip_bad)
    except ClError as exc:  # the image-caption loader suggests its own parameter: here it is an option
        raise ClError(str(exc).replace("set skip_bad = true", "add --skip-bad")) from None
    for name, source in dataset.splits().items():
        if len(source) == 0:
            continue
        index = write_shards(source, out, split=name, shard_size=shard_size)
        shards = index["splits"][name]["shards"]
        click.echo(f"{name}: {len(source)} examples in {len(shards)} shard(s)")
    click.echo(f"done: {out / 'shards.json'}")
