"""``cl embed`` / ``cl index build`` / ``cl search`` and their Python API, on a tiny image-text run trained here
(colour squares captioned "<colour> square": a mean-colour image tower and ``toy.chars`` as the text tower), and
FAISS's approximate indexes against the exact one on random unit vectors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cl_core import cli
from cl_core.testing import squares
from cl_core.testing.squares import COLOURS, write_squares
from cl_core.testing.squares import square as _square

PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("faiss")

SPEC = squares.CLIP_SPEC


@pytest.fixture(scope="module")
def host():
    return squares.plugin_host()


@pytest.fixture(scope="module")
def run(host, tmp_path_factory) -> Path:
    """A CLIP of colour squares and their names, trained in-process (80 steps, a few seconds)."""
    return squares.train_run(SPEC, tmp_path_factory.mktemp("search-run"), host)


def _corpus(folder: Path, per_colour: int = 3) -> Path:
    return write_squares(folder, per_colour)


@pytest.fixture
def corpus(tmp_path) -> Path:
    return _corpus(tmp_path / "corpus")


def invoke(host, monkeypatch, *args) -> Any:
    monkeypatch.setattr(cli, "_host", lambda: host)
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def _ids_of(emb: Path) -> list[int]:
    from cl_core.index import load_embeddings

    return load_embeddings(emb).ids.tolist()


def test_embed_index_and_search_from_the_command_line(run, corpus, host, monkeypatch, tmp_path):
    from cl_core.captioning import tower_digest
    from cl_core.weights import from_pretrained

    emb, idx = tmp_path / "emb", tmp_path / "idx"
    result = invoke(host, monkeypatch, "embed", run, "--data", corpus, "--out", emb, "--shard-size", "5")
    assert result.exit_code == 0, result.output
    assert "12 of 12 files embedded, 0 skipped; complete" in result.output
    manifest = json.loads((emb / "manifest.json").read_text())
    pipeline = from_pretrained(run, host=host)
    assert manifest["run_digest"] == tower_digest(pipeline.encoder("image"))
    assert (manifest["role"], manifest["modality"], manifest["files"], manifest["dim"]) == ("image", "image", 12, 8)
    assert (manifest["shard_size"], manifest["shards"], manifest["root"]) == (5, 3, str(corpus))
    assert sorted(p.name for p in emb.iterdir() if p.name.startswith("emb-")) == [
        f"emb-0000{i}.{ext}" for i in range(3) for ext in ("json", "safetensors")]

    from safetensors.numpy import load_file

    shard = load_file(str(emb / "emb-00000.safetensors"))
    assert shard["embeddings"].dtype == np.float32 and shard["embeddings"].shape == (5, 8)
    assert shard["ids"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(np.linalg.norm(shard["embeddings"], axis=1), 1.0, atol=1e-5)
    sidecar = json.loads((emb / "emb-00000.json").read_text())
    assert [f[0] for f in sidecar["files"]] == ["black-0.png", "black-2.png", "blue-0.png", "blue-2.png", "green-0.png"]
    first = PIL.open(corpus / "black-0.png").convert("RGB")
    expected = pipeline.embed("image", [first])[0].numpy()
    np.testing.assert_allclose(shard["embeddings"][0], expected / np.linalg.norm(expected), atol=1e-5)

    result = invoke(host, monkeypatch, "index", "build", emb, "--out", idx)
    assert result.exit_code == 0 and "built a flat index of 12 x 8" in result.output, result.output
    result = invoke(host, monkeypatch, "index", "build", emb, "--out", idx)
    assert result.exit_code == 0 and "index up to date" in result.output, result.output

    result = invoke(host, monkeypatch, "search", run, idx, "--text", "red square", "--k", "3", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [Path(r["path"]).name.split("-")[0] for r in rows] == ["red"] * 3  # text finds the red squares
    assert [r["rank"] for r in rows] == [1, 2, 3] and rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]
    assert all(Path(r["file"]) == corpus / r["path"] for r in rows)

    result = invoke(host, monkeypatch, "search", run, idx, "--image", corpus / "more" / "blue-1.png", "--k", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "1" and float(lines[0].split()[1]) == pytest.approx(1, abs=1e-4)
    assert lines[0].split()[2] == str(corpus / "more" / "blue-1.png")  # an indexed image finds itself first


def test_an_item_is_its_own_nearest_neighbour_in_a_flat_index(run, corpus, host, tmp_path):
    from cl_core.embedding import embed_corpus
    from cl_core.index import Index, build_index, load_embeddings
    from cl_core.search import Searcher

    embed_corpus(run, "image", corpus, tmp_path / "emb", host=host, shard_size=4)
    build_index(tmp_path / "emb", tmp_path / "idx")
    index = Index.open(tmp_path / "idx")
    data = load_embeddings(tmp_path / "emb")
    scores, ids = index.search(data.vectors, k=12)
    assert scores.shape == ids.shape == (12, 12)
    assert ids[:, 0].tolist() == data.ids.tolist()  # exact search: each item first for its own embedding
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert all(sorted(row) == list(range(12)) for row in ids.tolist())
    assert [index.path(i) for i in ids[:3, 0]] == data.paths[:3]

    searcher = Searcher.open(run, tmp_path / "idx", host=host)
    assert searcher.role == "image" and searcher.modality == "image" and searcher.query_modalities == ["image", "text"]
    hits = searcher.query_embedding(data.vectors[5], k=20)
    assert len(hits) == 12 and hits[0].id == 5 and hits[0].path == data.paths[5]  # fewer than k: all there are
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    for colour in COLOURS:
        top = searcher.query(text=f"{colour} square", k=3)
        assert {Path(h.path).name.split("-")[0] for h in top} == {colour}
    # embedding arithmetic: the sum of normalised parts, re-normalised
    a, b = searcher.embed("image", corpus / "red-0.png"), searcher.embed("text", "blue square")
    combined = searcher.combine([("image", corpus / "red-0.png"), ("text", "blue square")], k=12)
    direct = searcher.query_embedding((a + b) / np.linalg.norm(a + b), k=12)
    assert [h.id for h in combined] == [h.id for h in direct]
    assert [h.id for h in searcher.query(image=corpus / "red-0.png", text="blue square", k=12)] == [h.id for h in direct]
    assert [h.id for h in searcher.combine([a, ("text", "blue square", 1.0)], k=5)] == [h.id for h in direct[:5]]
    minus = searcher.combine([("image", corpus / "red-0.png"), ("image", PIL.open(corpus / "red-0.png"), -0.5)], k=1)
    assert minus[0].path == "red-0.png"
    from cl_core.errors import ClError

    with pytest.raises(ClError, match="the parts cancel out"):
        searcher.combine([a, ("image", corpus / "red-0.png", -1.0)])
    with pytest.raises(ClError, match="give a query"):
        searcher.query()
    with pytest.raises(ClError, match="no single encoder of audio queries"):
        searcher.query(audio=corpus / "x.wav")


def test_a_stopped_job_resumes_and_a_changed_file_re_embeds_its_shard(run, corpus, host, tmp_path, monkeypatch):
    from cl_core.embedding import embed_corpus
    from cl_core.pipeline import Pipeline

    emb = tmp_path / "emb"
    calls: list[int] = []
    original = Pipeline.embed
    monkeypatch.setattr(Pipeline, "embed", lambda self, role, items, **kw: calls.append(len(items))
                        or original(self, role, items, **kw))
    first = embed_corpus(run, "image", corpus, emb, host=host, shard_size=5, batch_size=2)
    assert (first.written, first.reused, first.items) == ([0, 1, 2], [], 12)
    assert sum(calls) == 12
    mtimes = {p.name: p.stat().st_mtime_ns for p in emb.glob("emb-*")}

    calls.clear()
    again = embed_corpus(run, "image", corpus, emb, host=host, shard_size=5, batch_size=2)
    assert (again.written, again.reused, calls) == ([], [0, 1, 2], [])  # nothing embedded twice

    (emb / "emb-00001.safetensors").unlink()  # as if the job was killed before shard 1 was renamed into place
    (emb / ".emb-00001.safetensors.123.tmp").write_bytes(b"half")
    resumed = embed_corpus(run, "image", corpus, emb, host=host, shard_size=5, batch_size=2)
    assert (resumed.written, resumed.reused, sum(calls)) == ([1], [0, 2], 5)
    assert {n: t for n, t in mtimes.items() if "00001" not in n} == {
        p.name: p.stat().st_mtime_ns for p in emb.glob("emb-*") if "00001" not in p.name}

    calls.clear()
    _square("green", np.random.default_rng(9)).save(corpus / "red-0.png")  # shard 2 holds red-0.png
    changed = embed_corpus(run, "image", corpus, emb, host=host, shard_size=5, batch_size=2)
    assert (changed.written, changed.reused, sum(calls)) == ([2], [0, 1], 2)
    assert json.loads((emb / "manifest.json").read_text())["complete"] is True


def test_ranks_embed_disjoint_shards_that_cover_every_file(run, corpus, host, tmp_path):
    from cl_core.embedding import embed_corpus, shards_of_rank
    from cl_core.errors import DataError
    from cl_core.index import build_index

    emb = tmp_path / "emb"
    assert shards_of_rank(5, 0, 2) == [0, 2, 4] and shards_of_rank(5, 1, 2) == [1, 3]
    zero = embed_corpus(run, "image", corpus, emb, host=host, shard_size=3, rank=0, world_size=2)
    assert zero.written == [0, 2] and zero.manifest["complete"] is False
    with pytest.raises(DataError, match=r"2 of 4 shard\(s\) not embedded yet.*emb-00001.safetensors, "
                                        r"emb-00003.safetensors"):
        build_index(emb, tmp_path / "idx")
    one = embed_corpus(run, "image", corpus, emb, host=host, shard_size=3, rank=1, world_size=2)
    assert one.written == [1, 3] and one.manifest["complete"] is True and one.manifest["embedded"] == 12
    ids = _ids_of(emb)
    assert sorted(ids) == list(range(12)) and len(ids) == len(set(ids))  # every file exactly once

    whole = embed_corpus(run, "image", corpus, tmp_path / "whole", host=host, shard_size=3)
    from cl_core.index import load_embeddings

    np.testing.assert_array_equal(load_embeddings(emb).vectors, load_embeddings(tmp_path / "whole").vectors)
    assert whole.written == [0, 1, 2, 3]

    _square("red", np.random.default_rng(4)).save(corpus / "a-first.png")  # a new file shifts every shard
    again = embed_corpus(run, "image", corpus, emb, host=host, shard_size=3, rank=0, world_size=2)
    assert again.written == [0, 2, 4] and again.manifest["complete"] is False  # rank 1's shards are stale now
    with pytest.raises(DataError, match=r"2 of 5 shard\(s\) not embedded yet, or embedded from other files"):
        build_index(emb, tmp_path / "idx")
    assert embed_corpus(run, "image", corpus, emb, host=host, shard_size=3, rank=1, world_size=2).written == [1, 3]
    assert sorted(_ids_of(emb)) == list(range(13)) and load_embeddings(emb).paths[0] == "a-first.png"


def test_torchrun_environment_picks_the_rank(run, corpus, host, monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    result = invoke(host, monkeypatch, "embed", run, corpus, "--out", tmp_path / "emb", "--shard-size", "2")
    assert result.exit_code == 0, result.output
    assert "[rank 1/3] shard 2/6" in result.output and "[rank 1/3] shard 5/6" in result.output
    assert sorted(p.name for p in (tmp_path / "emb").glob("*.safetensors")) == ["emb-00001.safetensors",
                                                                                "emb-00004.safetensors"]
    assert "2 of 6 shards done" in result.output
    monkeypatch.setenv("RANK", "3")
    result = invoke(host, monkeypatch, "embed", run, corpus, "--out", tmp_path / "emb")
    assert result.exit_code == 1 and "rank 3 of world size 3" in result.output, result.output


def test_the_index_is_rebuilt_only_when_the_model_or_the_data_changed(run, corpus, host, tmp_path):
    from safetensors.numpy import load_file, save_file

    from cl_core.embedding import embed_corpus
    from cl_core.index import Index, build_index

    emb, idx = tmp_path / "emb", tmp_path / "idx"
    embed_corpus(run, "image", corpus, emb, host=host, shard_size=5)
    assert build_index(emb, idx).built is True
    built_at = (idx / "index.faiss").stat().st_mtime_ns
    assert build_index(emb, idx).built is False
    assert "index up to date" in build_index(emb, idx).message
    assert build_index(emb, idx, force=True).built is True

    shard = load_file(str(emb / "emb-00001.safetensors"))  # an embedding shard changes
    shard["embeddings"] = shard["embeddings"][::-1].copy()
    save_file(shard, str(emb / "emb-00001.safetensors"))
    rebuilt = build_index(emb, idx)
    assert rebuilt.built is True and (idx / "index.faiss").stat().st_mtime_ns != built_at

    (corpus / "more" / "green-1.png").unlink()  # the data changes: re-embedding rewrites shards, then a rebuild
    embed_corpus(run, "image", corpus, emb, host=host, shard_size=5)
    assert build_index(emb, idx).built is True and Index.open(idx).info["count"] == 11
    assert build_index(emb, idx).built is False

    assert build_index(emb, idx, kind="hnsw").built is True  # another kind is another index
    info = build_index(emb, idx, kind="hnsw", ef_search=16)  # a search setting only: no rebuild
    assert info.built is False and info.info["params"]["ef_search"] == 16
    assert Index.open(idx).faiss_index.hnsw.efSearch == 16


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


def test_approximate_indexes_find_what_the_exact_one_finds(tmp_path):
    from cl_core.index import index_params, new_index

    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(40, 32)))
    clustered = _unit(centres[rng.integers(0, 40, 2000)] + 0.25 * rng.normal(size=(2000, 32)))
    uniform = _unit(rng.normal(size=(2000, 32)))
    for name, x in (("clustered", clustered), ("uniform", uniform)):
        queries = x[rng.choice(2000, 200, replace=False)] + 0.02 * rng.normal(size=(200, 32)).astype(np.float32)
        _, truth = new_index(x, "flat").search(_unit(queries), 10)
        assert index_params("ivf", 2000) == {"nlist": 51, "nprobe": 16}  # 4 sqrt(N), at most N / 39
        settings = {"clustered": index_params("ivf", 2000), "uniform": index_params("ivf", 2000, nprobe=32)}
        _, ivf = new_index(x, "ivf", settings[name]).search(_unit(queries), 10)
        _, hnsw = new_index(x, "hnsw").search(_unit(queries), 10)
        assert _recall(ivf, truth) >= 0.9, (name, _recall(ivf, truth))
        assert _recall(hnsw, truth) >= 0.9, (name, _recall(hnsw, truth))


def test_resolve_refuses_paths_outside_the_data_root(run, corpus, host, tmp_path):
    from cl_core.embedding import embed_corpus
    from cl_core.index import build_index
    from cl_core.search import Searcher, UnsafePathError

    secret = tmp_path / "secret.png"
    _square("red", np.random.default_rng(3)).save(secret)
    os.symlink(secret, corpus / "link.png")  # a link in the corpus pointing out of it
    embed_corpus(run, "image", corpus, tmp_path / "emb", host=host)
    build_index(tmp_path / "emb", tmp_path / "idx")
    searcher = Searcher.open(run, tmp_path / "idx", host=host)
    hit = searcher.query(image=corpus / "more" / "black-1.png", k=1)[0]
    assert hit.path == "more/black-1.png" and searcher.resolve(hit.path) == (corpus / "more" / "black-1.png").resolve()
    assert searcher.resolve(corpus / "red-0.png") == (corpus / "red-0.png").resolve()  # absolute, inside: fine
    assert searcher.resolve("more/../red-0.png") == (corpus / "red-0.png").resolve()
    refused = ["../secret.png", "more/../../secret.png", str(secret), "/etc/passwd", "notes.txt", str(corpus),
               "", ".", "red-0.png\x00.txt", "link.png", str(corpus / "more" / ".." / ".." / "secret.png")]
    for path in refused:
        with pytest.raises(UnsafePathError):
            searcher.resolve(path)
    with pytest.raises(UnsafePathError, match="a link leading outside the data root"):
        searcher.resolve("link.png")
    with pytest.raises(UnsafePathError, match="outside the data root"):
        searcher.resolve("../secret.png")
    with pytest.raises(ValueError):  # what a web server catches
        searcher.resolve("/etc/passwd")


def test_an_unreadable_file_is_named_or_skipped(run, corpus, host, monkeypatch, tmp_path):
    from cl_core.index import Index

    (corpus / "more" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    emb = tmp_path / "emb"
    result = invoke(host, monkeypatch, "embed", run, "--data", corpus, "--out", emb, "--shard-size", "4")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "--skip-bad skips" in result.output
    assert f"error: {corpus / 'more' / 'broken.png'}: not an image (Pillow cannot identify it)" in result.output
    assert result.output.startswith("shard 1/4: 4 image item(s)")  # the shards before it are kept
    # shards before the bad one are whole; the bad one's shard was never written, and nothing is half-written
    assert sorted(p.name for p in emb.glob("emb-*")) == [f"emb-0000{i}.{ext}" for i in (0, 1)
                                                        for ext in ("json", "safetensors")]  # broken.png: shard 2
    assert not list(emb.glob(".*.tmp"))

    result = invoke(host, monkeypatch, "embed", run, "--data", corpus, "--out", emb, "--shard-size", "4",
                    "--skip-bad")
    assert result.exit_code == 0, result.output
    assert "broken.png: " in result.output and "12 of 13 files embedded, 1 skipped; complete" in result.output
    manifest = json.loads((emb / "manifest.json").read_text())
    assert (manifest["files"], manifest["embedded"], manifest["skipped"]) == (13, 12, 1)
    result = invoke(host, monkeypatch, "index", "build", emb, "--out", tmp_path / "idx", "--kind", "hnsw")
    assert result.exit_code == 0, result.output
    index = Index.open(tmp_path / "idx")
    assert len(index) == 12 and "more/broken.png" not in index.paths and index.paths.count(None) == 1


def test_user_errors_are_one_clean_line(run, corpus, host, monkeypatch, tmp_path):
    from cl_core.build import build_pipeline
    from cl_core.spec import loads_spec
    from cl_core.weights import from_pretrained, save_pretrained

    def fails(*args: Any) -> str:
        result = invoke(host, monkeypatch, *args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and result.output.startswith("error: "), result.output
        return result.output

    assert "no such file or folder" in fails("embed", run, "--data", tmp_path / "nowhere", "--out", tmp_path / "e")
    assert "--role text: its encoder takes text items" in fails("embed", run, "--data", corpus, "--out",
                                                                tmp_path / "e", "--role", "text")
    assert "no manifest.json; not a folder `cl embed` wrote" in fails("index", "build", corpus)
    assert "not an index" in fails("search", run, corpus, "--text", "red")

    emb, idx = tmp_path / "emb", tmp_path / "idx"
    assert invoke(host, monkeypatch, "embed", run, corpus, "--out", emb).exit_code == 0
    monkeypatch.setitem(sys.modules, "faiss", None)  # FAISS not installed
    out = fails("index", "build", emb, "--out", idx)
    assert out.strip() == 'error: cl index and cl search need FAISS: pip install "cl-core[index]"'
    monkeypatch.delitem(sys.modules, "faiss")
    assert invoke(host, monkeypatch, "index", "build", emb, "--out", idx).exit_code == 0

    registry = host.registry()
    spec = loads_spec('[data]\ntype = "squares.images"\n[encoders.image]\ntype = "squares.pixels"\ncenter = 0.4\n'
                      '[encoders.text]\n'
                      'type = "toy.chars"\nembed_dim = 8\n[scorer]\ntype = "core.cosine"\n[loss]\ntype = "core.clip"',
                      registry)
    other = build_pipeline(spec, registry)  # another model: random towers
    save_pretrained(other, tmp_path / "other")
    out = fails("search", tmp_path / "other", idx, "--text", "red square")
    assert "holds image embeddings of another model's tower" in out and "`cl embed" in out
    other.encoder("image").load_state_dict(from_pretrained(run, host=host).encoder("image").state_dict())
    save_pretrained(other, tmp_path / "same-tower")  # another run holding the identical image tower: fine
    result = invoke(host, monkeypatch, "search", tmp_path / "same-tower", idx, "--image", corpus / "red-0.png")
    assert result.exit_code == 0 and str(corpus / "red-0.png") in result.output.splitlines()[0], result.output

    assert "no such file" in fails("search", run, idx, "--image", tmp_path / "missing.png")
    assert "give a query" in invoke(host, monkeypatch, "search", run, idx).output


def test_a_corpus_of_texts_is_searched_with_an_image(run, host, tmp_path):
    from cl_core.embedding import embed_corpus
    from cl_core.index import build_index
    from cl_core.search import Searcher

    texts = tmp_path / "texts"
    texts.mkdir()
    for colour in COLOURS:
        (texts / f"{colour}.txt").write_text(f"{colour} square\n")
    result = embed_corpus(run, "text", texts, tmp_path / "emb", host=host)
    assert result.manifest["role"] == "text" and result.items == 4
    build_index(tmp_path / "emb", tmp_path / "idx", kind="ivf")
    searcher = Searcher.open(run, tmp_path / "idx", host=host)
    picture = tmp_path / "query.png"
    _square("green", np.random.default_rng(5)).save(picture)
    assert searcher.query(image=picture, k=1)[0].path == "green.txt"


#: ``cl embed`` with the colour-squares plugins (not installed, so the script registers them) as torchrun runs it
TORCHRUN_EMBED = """
import sys
from cl_core import cli
from cl_core.testing import squares
host = squares.plugin_host()
cli._host = lambda: host
cli.main(sys.argv[1:])
"""


def test_cl_embed_under_torchrun_writes_what_one_process_writes(run, corpus, host, tmp_path):
    """Two real torchrun processes (gloo is not needed: ranks share nothing but the folder) embed their own shards
    into one folder and finish the manifest between them; the vectors are those of one process."""
    import subprocess

    from cl_core.embedding import embed_corpus
    from cl_core.index import load_embeddings

    script = tmp_path / "embed.py"
    script.write_text(TORCHRUN_EMBED)
    emb = tmp_path / "emb"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), "embed", str(run), "--data", str(corpus), "--out", str(emb),
                           "--shard-size", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[rank 0/2]" in done.stdout and "[rank 1/2]" in done.stdout
    manifest = json.loads((emb / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["embedded"] == 12 and manifest["shards_done"] == 6
    whole = embed_corpus(run, "image", corpus, tmp_path / "whole", host=host, shard_size=2)
    assert whole.written == list(range(6))
    together, alone = load_embeddings(emb), load_embeddings(tmp_path / "whole")
    assert together.ids.tolist() == alone.ids.tolist() == list(range(12))
    np.testing.assert_array_equal(together.vectors, alone.vectors)
