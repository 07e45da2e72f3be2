"""The on-disk tier of the feature cache: rows survive the process, exactly; namespaces keep functions apart."""

from __future__ import annotations

import torch
from torch import nn

from cl_core.feature_store import FeatureStore, module_digest, store_root
from cl_core.frozen import FeatureCache


def test_rows_round_trip_exactly_and_are_merged_with_what_another_writer_added(tmp_path):
    path = tmp_path / "f.safetensors"
    a, b = FeatureStore(path, flush_rows=10_000), FeatureStore(path, flush_rows=10_000)
    rows = torch.randn(3, 5)
    a.add([1, 2, 3], rows)
    assert not path.exists(), "nothing is written before a flush"
    a.flush()
    b.add([7], torch.ones(1, 5))  # b loaded nothing before a wrote: its flush must merge, not overwrite
    b.flush()
    fresh = FeatureStore(path)
    got = fresh.get([3, 1, 7, 99])
    assert set(got) == {1, 3, 7}
    assert torch.equal(got[1], rows[0]) and torch.equal(got[3], rows[2]) and torch.equal(got[7], torch.ones(5))
    assert len(fresh) == 4 and 2 in fresh and 99 not in fresh
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"


def test_a_full_batch_of_pending_rows_is_written_at_once(tmp_path):
    store = FeatureStore(tmp_path / "f.safetensors", flush_rows=4)
    store.add([1, 2, 3], torch.zeros(3, 2))
    assert not store.path.exists()
    store.add([4], torch.zeros(1, 2))
    assert len(FeatureStore(store.path)) == 4


def test_a_damaged_file_is_a_miss_and_is_rewritten(tmp_path):
    path = tmp_path / "f.safetensors"
    path.write_bytes(b"not a safetensors file")
    store = FeatureStore(path)
    assert store.get([1]) == {}
    store.add([1], torch.full((1, 3), 2.0))
    store.flush()
    assert torch.equal(FeatureStore(path).get([1])[1], torch.full((3,), 2.0))


def test_a_cache_with_a_store_computes_each_row_once_across_caches(tmp_path):
    calls = []

    def compute(rows):
        calls.append(len(rows))
        return rows.float()[:, None] * torch.tensor([1.0, 10.0])

    first = FeatureCache()
    first.store = FeatureStore(tmp_path / "f.safetensors")
    out = first.get_or_compute([5, 6, 5], lambda r: compute(torch.tensor([5, 6])[r.cpu()]))
    first.store.flush()
    second = FeatureCache()  # a new process: empty memory, same store file
    second.store = FeatureStore(tmp_path / "f.safetensors")
    assert second.claim([6, 8], ["six", "eight"]) == [True, False], "a stored row is a hit for the data path"
    again = second.get_or_compute([5, 6, 5], lambda r: compute(r))
    assert calls == [2], "the second cache read both rows from disk"
    assert torch.equal(out, again)


def test_the_namespace_changes_with_weights_and_signature_only():
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    digest = module_digest(net, "pool=4")
    same = nn.Linear(4, 3)
    same.load_state_dict(net.state_dict())
    assert module_digest(same, "pool=4") == digest
    assert module_digest(same, "pool=5") != digest
    with torch.no_grad():
        same.weight[0, 0] += 1e-6
    assert module_digest(same, "pool=4") != digest


def test_the_store_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CL_FEATURE_STORE", "off")
    assert store_root() is None
    monkeypatch.setenv("CL_FEATURE_STORE", str(tmp_path))
    assert store_root() == tmp_path
    monkeypatch.delenv("CL_FEATURE_STORE")
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "c"))
    assert store_root() == tmp_path / "c" / "features"
