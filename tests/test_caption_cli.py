"""``cl caption RUN ITEM...``: captions for image files and folders with a run's decoder, on a toy run trained here
(colour squares, a tiny pixel encoder and the trainable ``toy.char-decoder``), and the errors a user can cause, each
a clean message without a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cl_core import cli
from cl_core.testing import squares
from cl_core.testing.squares import COLOURS
from cl_core.testing.squares import square as _square

PIL = pytest.importorskip("PIL.Image")

SPEC = """
format = 1
[run]
seed = 0
device = "cpu"
output_dir = "{out}"
name = "{name}"
[data]
type = "squares.images"
[sampler]
type = "core.in-batch"
batch_size = 16
[encoders.image]
type = "squares.pixels"
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


@pytest.fixture(scope="module")
def host():
    return squares.plugin_host()


@pytest.fixture(scope="module")
def run(host, tmp_path_factory) -> Path:
    """A captioner of colour squares, trained in-process (96 steps, a few seconds)."""
    return squares.train_run(SPEC, tmp_path_factory.mktemp("caption"), host)


@pytest.fixture
def images(tmp_path) -> Path:
    """A folder of four PNG squares, one per colour, a JPEG red square and a text file (ignored in a folder)."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "images"
    folder.mkdir()
    for colour in COLOURS:
        _square(colour, rng).save(folder / f"{colour}.png")
    _square("red", rng).save(folder / "z-red.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def invoke(host, monkeypatch, *args) -> Any:
    monkeypatch.setattr(cli, "_host", lambda: host)
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def test_captions_for_files_and_folders(run, images, host, monkeypatch):
    from cl_core.weights import from_pretrained

    result = invoke(host, monkeypatch, "caption", run, images / "red.png", images / "blue.png")
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.output.splitlines()]
    assert [Path(p).name for p, _ in lines] == ["red.png", "blue.png"]
    assert [c for _, c in lines] == ["red square", "blue square"]  # the decoder learnt the colours
    pipeline = from_pretrained(run, host=host)
    expected = pipeline.caption("image", [PIL.open(images / n).convert("RGB") for n in ("red.png", "blue.png")])
    assert [c for _, c in lines] == expected  # the same captions as from Python

    result = invoke(host, monkeypatch, "caption", run, images, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [Path(r["item"]).name for r in rows] == ["black.png", "blue.png", "green.png", "red.png", "z-red.jpg"]
    assert [r["caption"] for r in rows] == ["black square", "blue square", "green square", "red square", "red square"]

    result = invoke(host, monkeypatch, "caption", run, images / "green.png", "--max-length", "3", "--role", "image")
    assert result.exit_code == 0, result.output
    assert result.output.split("\t")[1].strip() == "gre"  # the char decoder's units are characters


def test_user_errors_are_clean_messages(run, images, host, monkeypatch, tmp_path):
    def fails(*args: Any) -> str:
        result = invoke(host, monkeypatch, "caption", *args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and result.output.startswith("error: "), result.output
        return result.output

    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = fails(run, images / "notes.txt", tmp_path / "missing.png", empty, broken, images / "red.png")
    assert "4 item(s) cannot be captioned" in out
    assert "notes.txt: not an image" in out and "missing.png: no such file or folder" in out
    assert "a folder with no image files" in out and "broken.png: " in out

    assert "no encoder role 'text'; its roles: image (image)" in fails(run, images, "--role", "text")
    assert "is neither a local folder nor a Hub repository id" in fails(tmp_path / "nowhere", images)
    assert "has no model.safetensors" in fails(empty, images)


def test_a_run_without_a_decoder_and_roles_of_other_modalities(host, images, monkeypatch, tmp_path):
    from cl_core.build import build_pipeline
    from cl_core.spec import loads_spec
    from cl_core.weights import save_pretrained

    registry = host.registry()
    plain = loads_spec('[data]\ntype = "toy.pairs"\n[encoders.a]\ntype = "toy.linear"\n[encoders.b]\ntype = "toy.linear"\n'
                       '[scorer]\ntype = "core.cosine"\n[loss]\ntype = "core.clip"', registry)
    save_pretrained(build_pipeline(plain, registry), tmp_path / "plain")
    result = invoke(host, monkeypatch, "caption", tmp_path / "plain", images / "red.png")
    assert result.exit_code == 1 and "has no [decoder]: it cannot caption" in result.output, result.output

    vectors = loads_spec('[data]\ntype = "toy.pairs"\n[encoders.a]\ntype = "toy.linear"\n[decoder]\n'
                         'type = "toy.class-names"', registry)
    save_pretrained(build_pipeline(vectors, registry), tmp_path / "vectors")
    result = invoke(host, monkeypatch, "caption", tmp_path / "vectors", images / "red.png")
    assert result.exit_code == 1 and "give --role ROLE; the run's roles (modality): a (vector)" in result.output
    result = invoke(host, monkeypatch, "caption", tmp_path / "vectors", images / "red.png", "--role", "a")
    assert result.exit_code == 1 and "its encoder takes vector items" in result.output, result.output


def test_a_spec_that_trains_is_refused(host, images, monkeypatch, tmp_path):
    spec = tmp_path / "squares.toml"
    spec.write_text(SPEC.format(out=tmp_path / "runs", name="x"))
    result = invoke(host, monkeypatch, "caption", spec, images / "red.png")
    assert result.exit_code == 1 and "this spec trains: `cl train` it, then `cl caption`" in result.output


def test_help_lists_the_options(host, monkeypatch):
    result = invoke(host, monkeypatch, "caption", "--help")
    assert result.exit_code == 0
    assert all(option in result.output for option in ("--role", "--max-length", "--batch-size", "--device", "--json",
                                                      "--modality", "--decoder", "--decoder-set"))


def _two_towers(host, run: Path, folder: Path, *, same: bool) -> Path:
    """A saved "bound" model with the roles ``image`` and ``sketch`` (both squares.pixels): with ``same``, both
    hold the squares run's image tower, so sketches embed into that run's space; otherwise both are random."""
    import torch

    from cl_core.build import build_pipeline
    from cl_core.spec import loads_spec
    from cl_core.weights import from_pretrained, save_pretrained

    registry = host.registry()
    spec = loads_spec('[data]\ntype = "squares.images"\n[encoders.image]\ntype = "squares.pixels"\n'
                      '[encoders.sketch]\ntype = "squares.pixels"\n[scorer]\ntype = "core.cosine"\n'
                      '[loss]\ntype = "core.clip"', registry)
    torch.manual_seed(7)
    bound = build_pipeline(spec, registry)
    if same:
        tower = from_pretrained(run, host=host).encoder("image").state_dict()
        bound.encoder("image").load_state_dict(tower)
        bound.encoder("sketch").load_state_dict(tower)
    save_pretrained(bound, folder)
    return folder


def test_a_decoder_of_another_run_captions_a_role_in_its_space(run, images, host, monkeypatch, tmp_path):
    bound = _two_towers(host, run, tmp_path / "bound", same=True)
    result = invoke(host, monkeypatch, "caption", bound, images / "red.png", images / "blue.png", "--role", "sketch",
                    "--decoder", run)
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[1] for line in result.output.splitlines()] == ["red square", "blue square"]


def test_a_decoder_of_another_space_is_refused(run, images, host, monkeypatch, tmp_path):
    other = _two_towers(host, run, tmp_path / "other", same=False)
    result = invoke(host, monkeypatch, "caption", other, images / "red.png", "--role", "sketch", "--decoder", run)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "was trained in another space" in result.output and "'sketch' embeddings" in result.output
    result = invoke(host, monkeypatch, "caption", run, images / "red.png", "--decoder-set", "k=3")
    assert result.exit_code == 1 and "give --decoder too" in result.output, result.output
    result = invoke(host, monkeypatch, "caption", run, images / "red.png", "--decoder", tmp_path / "none.toml")
    assert result.exit_code == 1 and "cannot read it as a TOML spec" in result.output, result.output


def test_audio_files_are_named_wav(run, host, monkeypatch, tmp_path):
    (tmp_path / "song.mp3").write_bytes(b"ID3")
    result = invoke(host, monkeypatch, "caption", run, tmp_path / "song.mp3", "--modality", "audio")
    assert result.exit_code == 1 and "song.mp3: not a WAV file" in result.output, result.output
    assert "ffmpeg -i song.mp3 -ac 1 -ar 16000 song.wav" in result.output
