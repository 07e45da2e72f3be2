"""Two CPU processes (gloo) training from shards, each rank streaming its own shards, end with the weights of one
process reading the same global batches (the ``datasets.stream`` sampler's streams; 1e-5).

Run as a script (``python test_stream_distributed.py SPEC``) this module is the worker: it trains SPEC in two
processes (:func:`cl_core.testing.gloo.spawn`).
"""

from __future__ import annotations

import sys

import torch

SPEC = """
format = 1
[run]
seed = 0
output_dir = "{out}"
name = "{name}"
num_threads = 1
device = "cpu"
[data]
type = "datasets.shards"
root = "{root}"
[sampler]
type = "datasets.stream"
batch_size = 16
shuffle = 8
streams = 4
[encoders.a]
type = "toy.linear"
[encoders.b]
type = "toy.linear"
[scorer]
type = "core.cosine"
[loss]
type = "core.clip"
label_aware = true
[trainer]
epochs = 2
lr = 0.01
progress = false
plots = false
checkpoint_every = 3
"""


def _host():
    import cl_datasets.plugin
    from cl_core.plugins import PluginHost
    from cl_core.testing import toy

    host = PluginHost(autoload=False)
    host.register(toy, name="toy")
    host.register(cl_datasets.plugin, name="datasets")
    return host


def _worker(rank: int, world: int, spec: str) -> None:
    from cl_core.runs import train

    train(spec, host=_host(), log=lambda m: None)


if __name__ == "__main__":
    from cl_core.testing.gloo import spawn

    spawn(_worker, 2, sys.argv[1])
else:
    from safetensors.torch import load_file

    from cl_core.testing.gloo import run_script

    def test_two_ranks_streaming_their_own_shards_train_the_weights_of_one(tmp_path):
        from cl_core.runs import train
        from cl_core.standalone import build
        from cl_datasets.shards import write_shards

        root = tmp_path / "shards"
        pairs = build("dataset", "toy.pairs", registry=_host().registry(), size=96)
        for split, source in pairs.splits().items():
            write_shards(source, root, split=split, shard_size=12)
        specs = {}
        for name in ("one", "two"):
            specs[name] = tmp_path / f"{name}.toml"
            specs[name].write_text(SPEC.format(out=(tmp_path / "runs").as_posix(), name=name, root=root.as_posix()))
        run_script(__file__, specs["two"])
        train(specs["one"], host=_host(), log=lambda m: None)
        one = load_file(str(tmp_path / "runs" / "one" / "model.safetensors"))
        two = load_file(str(tmp_path / "runs" / "two" / "model.safetensors"))
        assert one.keys() == two.keys() and one
        for key in one:
            torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-5, msg=key)
