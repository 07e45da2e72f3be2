"""The seeded held-out selection shared by both datasets."""

from __future__ import annotations

import pytest

from cl_datasets.splits import choose_holdout, holdout_count, seeded_order


@pytest.mark.parametrize("n, fraction, expected", [
    (0, 0.5, 0), (1, 0.5, 0), (2, 0.01, 1), (2, 0.9, 1), (10, 0.2, 2), (10, 0.99, 9), (1906, 0.2, 381), (5, 0.0, 0),
])
def test_holdout_count(n, fraction, expected):
    assert holdout_count(n, fraction) == expected


def test_choose_holdout_ignores_input_order_and_depends_on_seed():
    keys = [f"k{i}" for i in range(100)]
    held = choose_holdout(keys, 0.2, seed=0)
    assert len(held) == 20 and held <= set(keys)
    assert choose_holdout(list(reversed(keys)), 0.2, seed=0) == held
    assert choose_holdout(keys, 0.2, seed=1) != held
    assert seeded_order(keys, 0, "holdout")[:20] == sorted(held, key=seeded_order(keys, 0, "holdout").index)


def test_choose_holdout_rejects_duplicates_and_bad_fractions():
    with pytest.raises(ValueError, match="distinct"):
        choose_holdout(["a", "a"], 0.5, 0)
    with pytest.raises(ValueError, match="fraction"):
        choose_holdout(["a", "b"], 1.0, 0)
