"""The catalogue through specs: each combination builds from TOML and trains the toy pipeline (finite loss)."""

from __future__ import annotations

import json
import math

import pytest

SPEC = """
format = 1
[run]
seed = 0
output_dir = "{out}"
name = "{name}"
[data]
type = "toy.pairs"
classes = 4
[sampler]
{sampler}
[encoders.a]
type = "toy.linear"
[encoders.b]
type = "toy.linear"
[scorer]
{scorer}
[loss]
{loss}
[trainer]
epochs = 1
lr = 0.01
progress = false
plots = false
"""

COMBINATIONS = {
    "bilinear-info-nce": ('type = "core.in-batch"\nbatch_size = 16', 'type = "core.bilinear"\nrank = 2',
                          'type = "core.info-nce"\nsymmetric = true\nimplementation = "tiled"'),
    "cosine-siglip": ('type = "core.in-batch"\nbatch_size = 16', 'type = "core.cosine"\ntemperature = 0.1',
                      'type = "core.siglip"\nlabel_aware = true'),
    "m-per-class-supcon": ('type = "core.m-per-class"\nbatch_size = 16\nm = 4', 'type = "core.cosine"',
                           'type = "core.supcon"\nform = "in"'),
    "neg-l2-triplet": ('type = "core.m-per-class"\nbatch_size = 16\nm = 4', 'type = "core.neg-l2"',
                       'type = "core.triplet"\nmining = "semi-hard"\nviews = "joint"'),
    "neg-sq-l2-contrastive": ('type = "core.in-batch"\nbatch_size = 16', 'type = "core.neg-sq-l2"',
                              'type = "core.contrastive-hinge"\nneg_margin = 2.0'),
    "dot-nce": ('type = "core.in-batch"\nbatch_size = 16', 'type = "core.dot"\ntemperature = 0.5',
                'type = "core.nce"'),
    "neg-l1-negative-sampling": ('type = "core.in-batch"\nbatch_size = 16', 'type = "core.neg-l1"',
                                 'type = "core.negative-sampling"'),
    "memory-queue": ('type = "core.in-batch"\nbatch_size = 16', 'type = "core.cosine"',
                     'type = "core.memory-queue"\nsize = 24'),
}


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_combination_trains_from_a_spec(name, tmp_path, toy_host):
    from cl_core.runs import train

    sampler, scorer, loss = COMBINATIONS[name]
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(out=tmp_path / "runs", name=name, sampler=sampler, scorer=scorer, loss=loss))
    result = train(path, host=toy_host, log=lambda m: None)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses and all(math.isfinite(v) for v in losses)
