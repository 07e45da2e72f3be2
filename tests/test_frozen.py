"""cl_core.frozen: the feature cache and its claims, item keys, freezing helpers and FrozenEncoder."""

from __future__ import annotations

import copy
import hashlib
import pickle
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from cl_core.components import CandidateSet, Encoder
from cl_core.frozen import (
    FeatureCache,
    FrozenEncoder,
    FrozenParts,
    digest_keys,
    freeze,
    item_digest,
    item_keys,
)
from cl_core.testing.toy import ToyLinearParams, build_linear


def _features(keys: Sequence[int]) -> Tensor:
    """A deterministic feature row [3] per key."""
    return torch.tensor([[float(k), float(k) * 2, -float(k)] for k in keys])


def _counting(keys: Sequence[int], calls: list[list[int]]):
    def compute(rows: Tensor) -> Tensor:
        calls.append(rows.tolist())
        return _features([keys[i] for i in rows.tolist()])

    return compute


# -- FeatureCache ---------------------------------------------------------------------------------------
def test_cache_computes_only_missing_rows_once_and_returns_them_in_key_order():
    cache = FeatureCache(8)
    calls: list[list[int]] = []
    keys = [5, 7, 5, 9]
    out = cache.get_or_compute(keys, _counting(keys, calls))
    assert calls == [[0, 1, 3]], "first occurrence of each missing key"
    assert torch.equal(out, _features(keys)) and out.dtype == torch.float32
    keys2 = [9, 1, 7]
    out2 = cache.get_or_compute(keys2, _counting(keys2, calls))
    assert calls[1] == [1], "only the new key is computed"
    assert torch.equal(out2, _features(keys2))
    assert len(cache) == 4 and 7 in cache and 3 not in cache


def test_cache_evicts_least_recently_used_beyond_capacity():
    cache = FeatureCache(2)
    for batch in ([1], [2], [1], [3]):  # 1 is used again before 3 arrives: 2 is the oldest
        cache.get_or_compute(batch, _counting(batch, []))
    assert cache.keys() == [1, 3]
    batch = [4, 5, 6]  # a batch larger than the capacity is served whole, then trimmed
    assert torch.equal(cache.get_or_compute(batch, _counting(batch, [])), _features(batch))
    assert cache.keys() == [5, 6]
    cache.capacity = 0
    cache.get_or_compute([6], _counting([6], []))
    assert len(cache) == 0


def test_cache_stores_detached_copies_and_clears():
    cache = FeatureCache()
    weight = torch.ones(3, requires_grad=True)
    out = cache.get_or_compute([1], lambda rows: weight[None] * 2)
    assert not out.requires_grad, "compute runs under no_grad"
    out.zero_()
    assert torch.equal(cache.peek(1), torch.full((3,), 2.0)), "the cache keeps its own row"
    cache.clear()
    assert len(cache) == 0 and cache.peek(1) is None


def test_cache_errors():
    with pytest.raises(ValueError, match="capacity"):
        FeatureCache(-1)
    cache = FeatureCache()
    with pytest.raises(ValueError, match="at least one key"):
        cache.get_or_compute([], lambda rows: torch.zeros(0, 3))
    with pytest.raises(ValueError, match="one row per missing key"):
        cache.get_or_compute([1, 2], lambda rows: torch.zeros(1, 3))


def test_claims_hold_items_through_eviction_and_clearing():
    cache = FeatureCache(2)
    cache.get_or_compute([1, 2], _counting([1, 2], []))
    assert cache.claim([1, 2, 3], ["a", "b", "c"]) == [True, True, False]
    assert cache.num_claimed == 2
    cache.get_or_compute([8, 9], _counting([8, 9], []))  # evicts 1 and 2
    cache.clear()
    prepared = {"key": torch.tensor([1, 2, 3]), "ready": torch.tensor([False, False, True]),
                "x": torch.tensor([0.0, 0.0, 3.0])}
    seen: list[list[str]] = []

    def prepare(items):
        seen.append(list(items))
        return {"x": torch.tensor([float(ord(i) - ord("a") + 1) for i in items])}

    done = cache.complete(prepared, prepare)
    assert seen == [["a", "b"]], "rows the cache lost are prepared from their held items"
    assert set(done) == {"key", "x"} and done["x"].tolist() == [1.0, 2.0, 3.0]
    assert cache.num_claimed == 0, "the batch's claims are released"


def test_complete_leaves_served_rows_alone_and_needs_a_claim():
    cache = FeatureCache()
    cache.get_or_compute([1, 2], _counting([1, 2], []))
    cache.claim([1, 1], ["a", "a"])  # one key claimed by two batches
    batch = {"key": torch.tensor([1]), "ready": torch.tensor([False]), "x": torch.zeros(1)}
    assert cache.complete(batch, lambda items: pytest.fail("row 1 is cached")).keys() == {"key", "x"}
    assert cache.num_claimed == 1, "one claim per batch is released"
    cache.release([1])
    assert cache.num_claimed == 0
    # not usable (e.g. the trunk now trains): every left-out row is prepared
    cache.claim([2], ["b"])
    done = cache.complete({"key": torch.tensor([2]), "ready": torch.tensor([False]), "x": torch.zeros(1)},
                          lambda items: {"x": torch.tensor([42.0])}, usable=False)
    assert done["x"].tolist() == [42.0]
    with pytest.raises(RuntimeError, match="Tower: a row was left out of prepare\\(\\) without a claim"):
        cache.complete({"key": torch.tensor([7]), "ready": torch.tensor([False]), "x": torch.zeros(1)},
                       lambda items: {"x": torch.zeros(1)}, owner="Tower")


def test_claims_are_bounded_oldest_first():
    cache = FeatureCache(max_claims=2)
    cache.get_or_compute([1, 2, 3], _counting([1, 2, 3], []))
    cache.claim([1, 2, 3], "abc")
    assert cache.num_claimed == 2
    with pytest.raises(RuntimeError):  # the claim on 1 was dropped
        cache.complete({"key": torch.tensor([1]), "ready": torch.tensor([False]), "x": torch.zeros(1)},
                       lambda items: {"x": torch.zeros(1)}, usable=False)


def test_copies_keep_rows_but_not_claims():
    cache = FeatureCache(4)
    cache.get_or_compute([1, 2], _counting([1, 2], []))
    cache.claim([1], ["a"])
    for twin in (copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))):
        assert twin.keys() == [2, 1] and twin.num_claimed == 0 and twin.capacity == 4  # claimed: 1 used last
        twin.get_or_compute([3], _counting([3], []))  # its lock works
    assert cache.num_claimed == 1


def test_cache_is_thread_safe_under_concurrent_claims_and_lookups():
    cache = FeatureCache(64)
    errors: list[BaseException] = []
    stop = threading.Event()

    def data_thread():
        try:
            rng = np.random.default_rng(1)
            while not stop.is_set():
                keys = rng.integers(0, 200, 16).tolist()
                hits = cache.claim(keys, keys)
                cache.release([k for k, h in zip(keys, hits) if h])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=data_thread) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        rng = np.random.default_rng(0)
        for _ in range(300):
            keys = rng.integers(0, 200, 32).tolist()
            out = cache.get_or_compute(keys, _counting(keys, []))
            assert torch.equal(out, _features(keys))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert len(cache) <= 64 and cache.num_claimed == 0


# -- item keys ------------------------------------------------------------------------------------------
def test_equal_items_have_equal_keys_and_strings_keep_their_blake2b_keys():
    from PIL import Image

    a = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    image = Image.fromarray(a)
    items = ["grinning face", image, a, b"raw"]
    twins = ["grinning face", image.copy(), a.copy(), bytearray(b"raw")]
    assert item_keys(items).tolist() == item_keys(twins).tolist()
    assert item_keys(items).dtype == torch.int64 and item_keys(items).shape == (4,)
    expected = int.from_bytes(hashlib.blake2b(b"grinning face", digest_size=8).digest(), "little", signed=True)
    assert int(item_keys(["grinning face"])[0]) == expected, "the keys clip used before the move"
    assert item_keys([image], salt=64).tolist() == digest_keys([item_digest(image)], 64).tolist()


def test_different_items_sizes_and_salts_have_different_keys():
    from PIL import Image

    a = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    variants = [a, a.reshape(4, 12), a.reshape(2, 8, 3), a.astype(np.int16), a[::-1].copy(), Image.fromarray(a),
                Image.fromarray(a).convert("RGBA"), Image.fromarray(a).resize((8, 8)), a.tobytes(), "x", b"x",
                torch.from_numpy(a)]
    keys = item_keys(variants).tolist()
    assert len(set(keys)) == len(keys)
    p1, p2 = Image.new("P", (4, 4)), Image.new("P", (4, 4))
    p2.putpalette([255, 0, 0] * 256)
    assert item_digest(p1) != item_digest(p2), "same indices, different colours"
    salted = [item_keys([a], salt=s).item() for s in (None, 32, 64, "shortest", (64, b"longest:255"), 2**40)]
    assert len(set(salted)) == len(salted)
    assert item_keys(["a"], salt=1).item() != item_keys(["a"]).item()


def test_item_keys_are_the_same_in_every_process():
    code = ("from cl_core.frozen import item_keys; import numpy as np; "
            "print(item_keys(['grinning face', np.zeros((2, 2), np.uint8), b'x'], salt=7).tolist())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1
    here = item_keys(["grinning face", np.zeros((2, 2), np.uint8), b"x"], salt=7).tolist()
    assert outs == {f"{here}\n"}


def test_item_key_errors():
    with pytest.raises(ValueError, match=r"items\[1\]: expected a PIL image, a numpy array, a tensor or bytes, "
                                         r"got int"):
        item_keys(["ok", 3])
    with pytest.raises(ValueError, match=r"items\[3\]: .*got str"):
        item_digest("text", 3)
    with pytest.raises(TypeError, match="salt"):
        item_keys(["a"], salt=1.5)
    with pytest.raises(ValueError, match="int64"):
        item_keys(["a"], salt=2**64)


# -- freezing -------------------------------------------------------------------------------------------
class _Owner(FrozenParts, nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def test_frozen_parts_stay_in_eval_mode_and_get_no_gradients():
    owner = _Owner()
    owner.freeze_parts(owner.body)
    owner.freeze_parts(owner.body)  # idempotent
    assert owner.frozen_parts == (owner.body,)
    stats = owner.body[1].running_mean.clone()
    assert owner.train() is owner
    assert owner.training and owner.head.training
    assert not any(m.training for m in owner.body.modules()), "BatchNorm and dropout are frozen too"
    x = torch.randn(8, 4)
    owner(x).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in owner.body.parameters())
    assert owner.head.weight.grad is not None
    assert torch.equal(owner.body[1].running_mean, stats), "eval-mode BatchNorm keeps its statistics"
    torch.testing.assert_close(owner(x), owner(x))  # no dropout
    owner.eval().train(True)
    assert not owner.body.training
    twin = copy.deepcopy(owner).train()
    assert twin.frozen_parts == (twin.body,) and not twin.body.training


def test_freeze_function():
    module = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    freeze(module)
    assert not module.training and not any(p.requires_grad for p in module.parameters())


# -- FrozenEncoder --------------------------------------------------------------------------------------
def _toy(embed_dim: int = 4) -> Encoder:
    return build_linear(ToyLinearParams(in_dim=8, embed_dim=embed_dim), None)


def _count_rows(encoder: Encoder) -> list[int]:
    calls: list[int] = []
    original = encoder._encode

    def counting(inputs: Mapping[str, Tensor]) -> Tensor:
        calls.append(int(next(iter(inputs.values())).shape[0]))
        return original(inputs)

    encoder._encode = counting
    return calls


@pytest.fixture
def vectors() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=8).astype("float32") for _ in range(6)]


def test_frozen_encoder_embeds_like_its_encoder_and_serves_repeats_from_the_cache(vectors):
    torch.manual_seed(0)
    inner = _toy()
    frozen = FrozenEncoder(inner)
    assert frozen.encoder is inner and frozen.embed_dim == 4 and frozen.modality == "vector"
    with torch.no_grad():
        expected = inner.encode(inner.prepare(vectors))
    calls = _count_rows(inner)
    prepared = frozen.prepare(vectors + vectors[:2])
    assert prepared["key"].dtype == torch.int64 and prepared["key"].shape == (8,) and "x" in prepared
    first = frozen.encode(prepared)
    assert calls == [6], "repeated rows are encoded once"
    torch.testing.assert_close(first, torch.cat([expected, expected[:2]]))
    again = frozen.encode(frozen.prepare(list(reversed(vectors))))
    assert calls == [6], "a second pass is served from the cache"
    assert torch.equal(again, first[:6].flip(0))
    extra = np.ones(8, dtype="float32")
    frozen.encode(frozen.prepare([vectors[0], extra]))
    assert calls == [6, 1], "only the missing row reaches the encoder"
    assert frozen.cache_len == 7


def test_frozen_encoder_is_locked(vectors):
    frozen = FrozenEncoder(_toy())
    assert not any(p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert frozen.training and not frozen.encoder.training
    out = frozen.encode(frozen.prepare(vectors))
    assert not out.requires_grad
    assert all(name.startswith("encoder.") for name in frozen.state_dict())
    assert set(frozen.state_dict()) == {f"encoder.{k}" for k in frozen.encoder.state_dict()}


def test_loading_weights_clears_the_cache(vectors):
    torch.manual_seed(0)
    frozen = FrozenEncoder(_toy())
    before = frozen.embed(vectors)
    assert frozen.cache_len == len(vectors)
    torch.manual_seed(1)
    other = _toy()
    frozen.load_state_dict({f"encoder.{k}": v for k, v in other.state_dict().items()})
    assert frozen.cache_len == 0
    after = frozen.embed(vectors)
    torch.testing.assert_close(after, other.embed(vectors))
    assert not torch.allclose(after, before)


def test_frozen_encoder_without_cache_and_copies(vectors):
    frozen = FrozenEncoder(_toy(), cache=False)
    calls = _count_rows(frozen.encoder)
    prepared = frozen.prepare(vectors)
    assert "key" not in prepared
    frozen.encode(prepared)
    frozen.encode(prepared)
    assert calls == [6, 6] and frozen.cache_len == 0
    cached = FrozenEncoder(_toy(), cache_size=3)
    cached.embed(vectors)
    assert cached.cache_len == 3
    twin = copy.deepcopy(cached)
    assert twin.cache_len == 3 and torch.equal(twin.embed(vectors), cached.embed(vectors))


def test_frozen_encoder_rejects_what_it_cannot_wrap(vectors):
    class Candidates(CandidateSet):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.zeros(3, 2))

        @property
        def embed_dim(self) -> int:
            return 2

        def candidates(self) -> Tensor:
            return self.table

    with pytest.raises(TypeError, match="Encoder"):
        FrozenEncoder(nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="CandidateSet"):
        FrozenEncoder(Candidates())
    with pytest.raises((ValueError, IndexError, RuntimeError)):
        FrozenEncoder(_toy()).encode(FrozenEncoder(_toy()).prepare([]))


class _LeavesOut(Encoder):
    """An encoder with its own ``"key"`` and the claim protocol's ``"ready"`` (as clip's image towers)."""

    modality = "vector"

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 4)
        self.released: list[int] = []
        self.seen_keys: list[list[int]] = []

    @property
    def embed_dim(self) -> int:
        return 4

    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:
        x = torch.as_tensor(np.stack(items))
        ready = torch.tensor([True] + [False] * (len(items) - 1))  # rows after the first "left out"
        return {"x": x, "key": torch.arange(len(items)) + 100, "ready": ready}

    def release(self, keys: Sequence[int]) -> None:
        self.released.extend(keys)

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        self.seen_keys.append(inputs["key"].tolist())
        return self.proj(inputs["x"])


def test_the_wrapped_encoders_own_key_travels_and_its_claims_on_cached_rows_are_given_back(vectors):
    inner = _LeavesOut()
    frozen = FrozenEncoder(inner)
    frozen.encode(frozen.prepare(vectors[:2]))
    prepared = frozen.prepare(vectors[:3])
    assert prepared["encoder.key"].tolist() == [100, 101, 102] and prepared["key"].shape == (3,)
    frozen.encode(prepared)
    assert inner.seen_keys == [[100, 101], [102]], "the wrapped encoder gets its own keys, and only missing rows"
    assert inner.released == [101], "the left-out row this cache served without it is released"
