"""WebDataset shards: written from any source and read back exactly; the stream sampler's batches are a function of
the epoch's generator alone (resume, workers, ranks); bad shards are named by shard and key, stopped or skipped."""

from __future__ import annotations

import json
import tarfile
import time
from collections import Counter

import numpy as np
import pytest
import torch

from cl_core.api import DataError, DataSource
from cl_datasets.params import ShardsParams, StreamParams
from cl_datasets.shards import write_shards
from cl_datasets.stream import ShardsDataset, StreamSampler


class Source(DataSource):
    """``n`` examples: a 12 px image whose colour encodes the row, a caption naming it, labels row % 5."""

    def __init__(self, n: int, offset: int = 0) -> None:
        self.fields = ("image", "text")
        self.labels = (np.arange(n) % 5).astype(np.int64)
        self.class_names = [f"class {i}" for i in range(5)]
        self.offset = offset

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, indices):
        images = [np.full((12, 12, 3), (i + self.offset) % 256, dtype=np.uint8) for i in indices]
        images = [np.dstack([im[..., 0], im[..., 1] // 2, np.full_like(im[..., 2], 7)]) for im in images]
        return {"image": images, "text": [f"example {i + self.offset}" for i in indices]}


@pytest.fixture
def root(tmp_path):
    out = tmp_path / "shards"
    write_shards(Source(100), out, split="train", shard_size=16)
    write_shards(Source(20, offset=1000), out, split="heldout", shard_size=16)
    return out


def _dataset(root, **kw):
    return ShardsDataset(ShardsParams(root=str(root), **kw))


def _texts(batches):
    return [t for b in batches for t in b.inputs["text"]]


def _epoch(dataset, seed=0, start=0, **params):
    sampler = StreamSampler(StreamParams(**{"batch_size": 8, **params}))
    source = dataset.splits()["train"]
    return list(sampler.batches(source, generator=torch.Generator().manual_seed(seed), start=start)), sampler


def test_shards_round_trip_every_value_and_the_index(root):
    index = json.loads((root / "shards.json").read_text())
    assert [s["count"] for s in index["splits"]["train"]["shards"]] == [16] * 6 + [4]
    assert index["fields"] == {"image": "png", "text": "txt", "label": "cls"}
    data = _dataset(root)
    heldout = data.splits()["heldout"]
    want = Source(20, offset=1000).get(range(20))
    got = heldout.get(range(20))
    assert got["text"] == want["text"]
    assert all(np.array_equal(a, b) for a, b in zip(got["image"], want["image"]))
    assert heldout.labels.tolist() == (np.arange(20) % 5).tolist()
    assert heldout.class_names == [f"class {i}" for i in range(5)]
    assert len(data.splits()["train"]) == 100
    with pytest.raises(DataError, match="streamed"):
        data.splits()["train"].get([0])


def test_one_epoch_reads_every_example_once_in_an_order_the_seed_decides(root):
    data = _dataset(root)
    batches, sampler = _epoch(data, shuffle=10)
    assert len(batches) == sampler.num_batches(data.splits()["train"]) == 12  # 100 // 8
    texts = _texts(batches)
    assert len(set(texts)) == 96 and set(texts) <= {f"example {i}" for i in range(100)}
    labels = torch.cat([b.labels for b in batches]).tolist()
    assert labels == [int(t.split()[1]) % 5 for t in texts]  # labels travel with their examples
    again, _ = _epoch(data, shuffle=10)
    other, _ = _epoch(data, seed=1, shuffle=10)
    assert _texts(again) == texts and _texts(other) != texts
    plain, _ = _epoch(data, shuffle=0)
    assert _texts(plain) != texts and Counter(_texts(plain)).most_common(1)[0][1] == 1


def test_a_resumed_epoch_yields_exactly_the_remaining_batches(root):
    data = _dataset(root)
    full, _ = _epoch(data, shuffle=10, streams=2)
    rest, _ = _epoch(data, shuffle=10, streams=2, start=5)
    assert _texts(rest) == _texts(full[5:])
    assert torch.equal(rest[0].indices, full[5].indices)


def test_worker_processes_give_the_same_batches(root):
    data = _dataset(root)
    inline, _ = _epoch(data, shuffle=10, streams=2)
    pooled, _ = _epoch(data, shuffle=10, streams=2, workers=2)
    assert _texts(pooled) == _texts(inline)
    assert all(np.array_equal(a, b) for x, y in zip(inline, pooled) for a, b in zip(x.inputs["image"],
                                                                                     y.inputs["image"]))


def test_ranks_read_their_own_streams_and_together_the_global_batch(root, monkeypatch):
    import cl_datasets.stream as stream

    data = _dataset(root)
    whole, _ = _epoch(data, shuffle=10, streams=4)
    per_rank = []
    for rank in range(2):
        monkeypatch.setattr(stream, "world", lambda r=rank: (r, 2))
        per_rank.append(_epoch(data, shuffle=10, streams=4)[0])
    assert len(per_rank[0]) == len(per_rank[1]) == len(whole)
    for k, batch in enumerate(whole):
        local = [per_rank[r][k].inputs["text"] for r in range(2)]
        assert len(local[0]) == len(local[1]) == 4 and not set(local[0]) & set(local[1])
        assert sorted(local[0] + local[1]) == sorted(batch.inputs["text"])
    monkeypatch.setattr(stream, "world", lambda: (0, 3))
    with pytest.raises(DataError, match="multiple of the world size"):
        _epoch(data, streams=4)


def test_a_truncated_shard_is_named_and_stops_or_is_skipped(root):
    shard = root / "train-000002.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    # tarfile reads a cut stream silently up to the cut: the half example at the cut lacks a field, and the shard
    # has fewer examples than the index counts; either way the shard and the example are named
    with pytest.raises(DataError, match=r"train-000002\.tar(: corrupt or truncated after example | \(example )"
                                        r"train-0000000\d\d"):
        _epoch(_dataset(root), shuffle=0)
    skipping = _dataset(root, on_error="skip")
    with pytest.warns(UserWarning, match="skipped"):
        batches, _ = _epoch(skipping, shuffle=0)
    texts = _texts(batches)
    assert len(texts) == len(set(texts)) and "example 32" in texts  # the examples before the break are kept
    assert "example 47" not in texts and skipping.splits()["train"].skipped[0][0].endswith("train-000002.tar")


def test_a_shard_cut_at_an_example_boundary_is_truncated_by_its_count(root, tmp_path):
    shard = root / "train-000004.tar"
    kept = tmp_path / "kept.tar"
    with tarfile.open(shard) as src, tarfile.open(kept, "w") as dst:
        for member in src.getmembers()[:30]:  # 10 of its 16 examples (image, label and text each)
            dst.addfile(member, src.extractfile(member))
    kept.replace(shard)
    with pytest.raises(DataError, match=r"train-000004\.tar \(example train-000000073\): truncated: 10 of the 16"):
        _epoch(_dataset(root), shuffle=0)


def test_a_missing_field_and_a_missing_shard_are_named(root, tmp_path):
    shard = root / "train-000001.tar"
    kept = tmp_path / "kept.tar"
    with tarfile.open(shard) as src, tarfile.open(kept, "w") as dst:
        for member in src.getmembers():
            if member.name != "train-000000020.text.txt":
                dst.addfile(member, src.extractfile(member))
    kept.replace(shard)
    with pytest.raises(DataError, match=r"train-000001\.tar \(example train-000000020\): no field 'text'"):
        _epoch(_dataset(root), shuffle=0)
    (root / "train-000003.tar").unlink()
    skipping = _dataset(root, on_error="skip")
    with pytest.warns(UserWarning):
        batches, _ = _epoch(skipping, shuffle=0)
    what = [w for _, _, w in skipping.splits()["train"].skipped]
    assert any("no field 'text'" in w for w in what) and any("cannot open it" in w for w in what)
    assert "example 20" not in _texts(batches) and "example 21" in _texts(batches)


def test_bad_sampler_settings_are_clear(root, tmp_path):
    with pytest.raises(ValueError, match="multiple of streams"):
        StreamParams(batch_size=10, streams=4)
    data = _dataset(root)
    with pytest.raises(DataError, match="at least 8 shards"):
        StreamSampler(StreamParams(batch_size=8, streams=8)).num_batches(data.splits()["train"])
    with pytest.raises(DataError, match="cannot read the shard index"):
        _dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match="already has shards"):
        write_shards(Source(4), root, split="train")


def test_cl_data_shard_writes_an_image_caption_folder_and_names_mistakes(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from cl_core.cli import main

    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i in range(10):
        Image.fromarray(np.full((9, 9, 3), i * 20, dtype=np.uint8)).save(images / f"{i}.png")
        rows.append(json.dumps({"image": f"{i}.png", "caption": f"grey {i}", "label": f"g{i % 5}"}))
    captions = tmp_path / "caps.jsonl"
    captions.write_text("\n".join(rows) + "\n")
    out = tmp_path / "shards"
    runner = CliRunner()
    done = runner.invoke(main, ["data", "shard", "--images", str(images), "--captions", str(captions), "--out",
                                str(out), "--shard-size", "3"])
    assert done.exit_code == 0, done.output
    index = json.loads((out / "shards.json").read_text())
    total = sum(s["count"] for split in index["splits"].values() for s in split["shards"])
    assert total == 10 and "train" in index["splits"] and index["fields"]["image"] == "png"
    data = _dataset(out)
    heldout = [name for name in data.splits() if name != "train"]
    assert heldout and len(data.splits()["train"]) + sum(len(data.splits()[n]) for n in heldout) == 10
    again = runner.invoke(main, ["data", "shard", "--images", str(images), "--captions", str(captions), "--out",
                                 str(out)])
    assert again.exit_code != 0 and "already has shards" in again.output and "Traceback" not in again.output
    missing = runner.invoke(main, ["data", "shard", "--images", str(images), "--out", str(tmp_path / "x")])
    assert missing.exit_code != 0 and "--captions" in missing.output
    nowhere = runner.invoke(main, ["data", "shard", "--images", str(images), "--captions", str(tmp_path / "no.jsonl"),
                                   "--out", str(tmp_path / "y")])
    assert nowhere.exit_code != 0 and "--captions" in nowhere.output and "no such file" in nowhere.output
    (images / "3.png").unlink()
    broken = runner.invoke(main, ["data", "shard", "--images", str(images), "--captions", str(captions), "--out",
                                  str(tmp_path / "z")])
    assert broken.exit_code != 0 and "add --skip-bad" in broken.output and "Traceback" not in broken.output
    skipped = runner.invoke(main, ["data", "shard", "--images", str(images), "--captions", str(captions), "--out",
                                   str(tmp_path / "z"), "--skip-bad"])
    assert skipped.exit_code == 0, skipped.output
    index = json.loads((tmp_path / "z" / "shards.json").read_text())
    assert sum(s["count"] for split in index["splits"].values() for s in split["shards"]) == 9
    (tmp_path / "a-file").write_text("x")
    for out, said in ((tmp_path / "a-file", "a file is there"), ("http://127.0.0.1:1/up/", "a local folder")):
        wrong = runner.invoke(main, ["data", "shard", "--images", str(images), "--captions", str(captions), "--out",
                                     str(out), "--skip-bad"])
        assert wrong.exit_code != 0 and said in wrong.output and "Traceback" not in wrong.output, wrong.output
    assert not (tmp_path / "http:").exists()


def test_evaluation_splits_check_their_counts_and_say_what_they_skipped(root, tmp_path):
    shard = root / "heldout-000000.tar"
    kept = tmp_path / "kept.tar"
    with tarfile.open(shard) as src, tarfile.open(kept, "w") as dst:
        for member in src.getmembers()[:6]:  # 2 of its 16 examples, cut at an example boundary
            dst.addfile(member, src.extractfile(member))
    kept.replace(shard)
    with pytest.raises(DataError, match=r"heldout-000000\.tar \(example heldout-000000001\): truncated: 2 of the 16"):
        _dataset(root)
    with pytest.warns(UserWarning, match=r"split 'heldout' skipped 1 shard\(s\) or example\(s\) and keeps 6"):
        heldout = _dataset(root, on_error="skip").splits()["heldout"]
    assert len(heldout) == 6 and heldout.skipped[0][2].startswith("truncated")  # the 2 before the cut, and shard 2


def test_skipping_is_refused_across_ranks(root, monkeypatch):
    import cl_datasets.stream as stream

    monkeypatch.setattr(stream, "world", lambda: (0, 2))
    with pytest.raises(DataError, match=r"on_error = \"skip\" cannot be used by 2 ranks"):
        _epoch(_dataset(root, on_error="skip"), streams=2)


def test_skipping_that_leaves_a_stream_empty_is_an_error_and_sampler_sizes_are_located(root, tmp_path):
    from cl_core.api import SpecError
    from cl_datasets.stream import build_stream

    # streams = 7 deals one shard to each stream; a broken shard leaves its stream without a batch
    (root / "train-000003.tar").write_bytes(b"not a tar at all")
    skipping = _dataset(root, on_error="skip")
    with pytest.raises(DataError, match=r"no batch could be drawn.*train-000003\.tar"):
        _epoch(skipping, batch_size=7, streams=7, shuffle=0)

    from cl_core.api import BuildContext

    ctx = BuildContext(dataset=_dataset(root), path="sampler")
    with pytest.raises(SpecError) as info:
        build_stream(StreamParams(batch_size=8, streams=8), ctx)
    assert info.value.problems[0].path == "sampler.streams"
    with pytest.raises(SpecError) as info:
        build_stream(StreamParams(batch_size=128, streams=2), ctx)
    assert info.value.problems[0].path == "sampler.batch_size"


# -- shards over HTTP (fsspec + aiohttp), from a server on localhost --------------------------------------------------


@pytest.fixture
def served(root):
    """``(base URL of root, server)``: a local HTTP server of the shard folder; paths in ``server.fail`` answer 500,
    paths in ``server.cut`` send their header's full length but only half the body, then close; paths in
    ``server.stall`` send half the body and then nothing for 3 s."""
    import functools
    import http.server
    import threading

    pytest.importorskip("aiohttp")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest's output clean
            pass

        def do_GET(self):
            name = self.path.rsplit("/", 1)[-1]
            if name in self.server.fail:
                self.send_error(500, "broken on purpose")
                return
            if name in self.server.cut or name in self.server.stall:
                body = (root / name).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if name in self.server.stall:
                    time.sleep(3)
                self.close_connection = True
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    server.fail, server.cut, server.stall = set(), set(), set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()
    server.server_close()


def test_shards_stream_from_a_url_exactly_as_from_the_folder(root, served):
    url, _ = served
    local, _ = _epoch(_dataset(root), shuffle=10, streams=2)
    remote, _ = _epoch(_dataset(url), shuffle=10, streams=2)
    assert len(remote) == 12 and _texts(remote) == _texts(local)
    assert all(np.array_equal(a, b) for x, y in zip(local, remote) for a, b in zip(x.inputs["image"],
                                                                                    y.inputs["image"]))
    assert _dataset(url).splits()["heldout"].get([3])["text"] == ["example 1003"]


def test_unreachable_missing_failing_and_cut_urls_are_named(root, served, tmp_path):
    url, server = served
    # nothing listens on the port of a closed server
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(DataError, match=rf"{dead}/shards.json: cannot read the shard index .*check that the server"):
        _dataset(dead)
    (root / "train-000001.tar").unlink()  # the server answers 404
    server.fail.add("train-000003.tar")
    server.cut.add("train-000005.tar")
    with pytest.raises(DataError, match=rf"{url}/train-00000[135]\.tar: (cannot open it|corrupt or truncated)"):
        _epoch(_dataset(url), shuffle=0)
    skipping = _dataset(url, on_error="skip")
    with pytest.warns(UserWarning, match="skipped"):
        batches, _ = _epoch(skipping, shuffle=0)
    what = {u.rsplit("/", 1)[-1]: w for u, _, w in skipping.splits()["train"].skipped}
    assert what["train-000001.tar"].startswith("cannot open it")
    assert "500" in what["train-000003.tar"]
    assert what["train-000005.tar"].startswith("corrupt or truncated")
    texts = _texts(batches)
    assert "example 16" not in texts and "example 48" not in texts and "example 33" in texts


def test_a_stalled_server_times_out_and_is_named(root, served):
    url, server = served
    server.stall.add("train-000002.tar")
    started = time.perf_counter()
    with pytest.raises(DataError, match=rf"{url}/train-000002\.tar: timed out .*nothing received for 0\.5 s"):
        _epoch(_dataset(url, read_timeout=0.5), shuffle=0)
    assert time.perf_counter() - started < 3  # it gave up before the server sent anything more


def test_a_url_without_aiohttp_names_the_install_command(root, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "aiohttp", None)  # import aiohttp now raises ImportError
    with pytest.raises(DataError, match=r"http://example\.invalid/s/shards\.json: .*pip install 'cl-datasets\[http\]'"):
        _dataset("http://example.invalid/s")
