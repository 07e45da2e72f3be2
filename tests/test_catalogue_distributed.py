"""Case 6: two CPU processes (gloo) each holding half a batch give the loss and the gradients of one process
holding the whole batch (1e-6, float64), for every loss family, direct and tiled, with hard-negative
columns, labels, an uneven split and a memory queue; and the trainer trains identically under 2 processes.

Run as a script (``python test_catalogue_distributed.py OUT_DIR``) this module is the worker: it starts two
processes (:func:`cl_core.testing.gloo.spawn`) and writes their results to ``OUT_DIR``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from cl_core.testing.gloo import run_script

WIDTH_IN, WIDTH = 6, 5


def _cases():
    """name -> (loss factory, scorer factory, global batch, extra candidates per row, labels?, log_noise?)."""
    from cl_core._builtin.losses import ClipLoss, InfoNCELoss
    from cl_core._builtin.margin import ContrastiveHingeLoss, ContrastiveLoss, TripletLoss
    from cl_core._builtin.memory_queue import MemoryQueueLoss
    from cl_core._builtin.nce import NCELoss, NegativeSamplingLoss
    from cl_core._builtin.scorers import CosineScorer, DotScorer, NegL2Scorer
    from cl_core._builtin.siglip import SigLIPLoss
    from cl_core._builtin.supcon import SupConLoss

    cosine = lambda: CosineScorer(temperature=0.2, learn_temperature=True)
    cosine_1 = lambda: _shape_1(cosine(), "logit_scale")
    return {
        "clip": (ClipLoss, cosine, 8, 0, False, False),
        "clip-scale-shape-1": (ClipLoss, cosine_1, 8, 0, False, False),
        "clip-tiled-scale-shape-1": (lambda: ClipLoss(implementation="tiled", tile_mb=1e-4), cosine_1, 8, 0, False,
                                     False),
        "siglip-bias-shape-1": (lambda: _shape_1(SigLIPLoss(bias_init=-2.0), "logit_bias"), cosine_1, 8, 0, False,
                                False),
        "clip-uneven": (ClipLoss, cosine, 7, 0, False, False),
        "clip-tiled": (lambda: ClipLoss(implementation="tiled", tile_mb=1e-4), cosine, 8, 0, False, False),
        "info-nce-hard-labels": (lambda: InfoNCELoss(symmetric=True, label_aware=True), cosine, 8, 1, True, False),
        "info-nce-tiled-hard": (lambda: InfoNCELoss(label_aware=True, implementation="tiled", tile_mb=1e-4),
                                DotScorer, 8, 2, True, False),
        "siglip": (lambda: SigLIPLoss(bias_init=-2.0, label_aware=True), cosine, 8, 0, True, False),
        "supcon-joint-out": (SupConLoss, cosine, 8, 0, True, False),
        "supcon-single-in": (lambda: SupConLoss(form="in", views="single"), cosine, 8, 0, True, False),
        "triplet-all": (lambda: TripletLoss(margin=1.0, mining="all"), NegL2Scorer, 8, 0, True, False),
        "triplet-semi-hard": (lambda: TripletLoss(margin=1.0, mining="semi-hard"), NegL2Scorer, 8, 0, True, False),
        "triplet-hard-joint": (lambda: TripletLoss(margin=1.0, views="joint"), NegL2Scorer, 8, 0, True, False),
        "contrastive-single": (lambda: ContrastiveLoss(margin=2.0, views="single"), NegL2Scorer, 8, 0, True, False),
        "contrastive-hinge": (lambda: ContrastiveHingeLoss(0.5, 2.0), NegL2Scorer, 8, 1, True, False),
        "nce": (NCELoss, DotScorer, 8, 1, False, True),
        "negative-sampling": (NegativeSamplingLoss, DotScorer, 8, 0, False, False),
        "memory-queue": (lambda: MemoryQueueLoss(size=12, dim=WIDTH, label_aware=True), cosine, 8, 0, True, False),
    }


def _shape_1(module, name: str):
    """``module`` with its scalar parameter ``name`` replaced by one of shape [1] (what a save/load round trip
    of a 0-dim array can give)."""
    old = getattr(module, name)
    setattr(module, name, torch.nn.Parameter(old.detach().reshape(1).clone(), requires_grad=old.requires_grad))
    return module


def _inputs(batch: int, extra: int):
    g = torch.Generator().manual_seed(batch * 10 + extra)
    xq = torch.randn(batch, WIDTH_IN, generator=g, dtype=torch.float64)
    xk = torch.randn(batch * (1 + extra), WIDTH_IN, generator=g, dtype=torch.float64)
    xk[:batch] = xq + 0.3 * xk[:batch]
    labels = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4, 5, 5])[:batch]
    log_noise = torch.log_softmax(torch.randn(batch * (1 + extra), generator=g, dtype=torch.float64), 0)
    return xq, xk, labels, log_noise


def _share(batch: int, rank: int, world: int) -> tuple[int, int]:
    counts = [batch // world + (1 if r < batch % world else 0) for r in range(world)]
    return sum(counts[:rank]), counts[rank]


def run_case(name: str, rank: int, world: int) -> dict[str, torch.Tensor]:
    """Loss value and (rank-averaged) gradients of one case on this rank's share of the batch."""
    from cl_core import distributed
    from cl_core._builtin.nce import NoiseTargets
    from cl_core.types import Targets

    make_loss, make_scorer, batch, extra, with_labels, with_noise = _cases()[name]
    torch.manual_seed(0)
    towers = torch.nn.ModuleDict({"q": torch.nn.Linear(WIDTH_IN, WIDTH), "k": torch.nn.Linear(WIDTH_IN, WIDTH)})
    scorer, loss = make_scorer(), make_loss()
    modules = torch.nn.ModuleDict({"towers": towers, "scorer": scorer, "loss": loss}).double()
    xq, xk, labels, log_noise = _inputs(batch, extra)
    start, n = _share(batch, rank, world)
    rows = list(range(start, start + n))
    k_rows = rows + [batch + r * extra + j for r in rows for j in range(extra)]
    results = {}
    steps = 2 if name == "memory-queue" else 1
    for step in range(steps):
        modules.zero_grad()
        q = towers["q"](xq[rows] * (1 + step))
        k = towers["k"](xk[k_rows] * (1 + step))
        kwargs = {"positive": torch.arange(n), "labels": labels[rows] if with_labels else None}
        targets = NoiseTargets(**kwargs, log_noise=log_noise[k_rows]) if with_noise else Targets(**kwargs)
        out = loss.compute(q, k, scorer, targets)
        out.value.backward()
        results[f"loss{step}"] = out.value.detach().clone()
    distributed.average_gradients(modules.parameters())
    for pname, param in modules.named_parameters():
        if param.grad is not None:
            results[f"grad.{pname}"] = param.grad.clone()
    for bname, buffer in loss.named_buffers():
        results[f"buffer.{bname}"] = buffer.clone()
    return results


def _train_toy(spec_path: str) -> None:
    from cl_core.plugins import PluginHost
    from cl_core.runs import train
    from cl_core.testing import toy

    host = PluginHost(autoload=False)
    host.register(toy, name="toy")
    train(spec_path, host=host, log=lambda m: None)


def _worker(rank: int, world: int, out: str, spec_path: str) -> None:
    from safetensors.torch import save_file

    for name in _cases():
        tensors = {k: v.contiguous() for k, v in run_case(name, rank, world).items()}
        save_file(tensors, os.path.join(out, f"{name}.rank{rank}.safetensors"))
    if spec_path:
        _train_toy(spec_path)


def main(out: str, spec_path: str = "") -> None:
    from cl_core.testing.gloo import spawn

    spawn(_worker, 2, out, spec_path)


# -- the test ---------------------------------------------------------------------------------------------

TOY_SPEC = """
format = 1
[run]
seed = 0
output_dir = "{out}"
name = "{name}"
num_threads = 1
device = "cpu"  # gloo, as in CI, also where a GPU is present
[data]
type = "toy.pairs"
[sampler]
type = "core.in-batch"
batch_size = 16
[encoders.a]
type = "toy.linear"
[encoders.b]
type = "toy.linear"
[scorer]
type = "core.cosine"
[loss]
type = "core.clip"
[trainer]
epochs = 2
lr = 0.01
progress = false
plots = false
"""


def _spawned(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    spec = out / "two.toml"
    spec.write_text(TOY_SPEC.format(out=out / "runs", name="two"))
    run_script(__file__, out, spec)
    return out


if __name__ != "__main__":
    import pytest
    from safetensors.torch import load_file

    @pytest.fixture(scope="module")
    def spawned(tmp_path_factory):
        return _spawned(tmp_path_factory)

    @pytest.mark.parametrize("name", list(_cases()))
    def test_two_processes_match_one(spawned, name):
        """Case 6: same loss (on both ranks) and same averaged gradients as one process, 1e-6."""
        expected = run_case(name, rank=0, world=1)
        ranks = [load_file(str(spawned / f"{name}.rank{r}.safetensors")) for r in range(2)]
        assert set(ranks[0]) >= set(expected), (sorted(ranks[0]), sorted(expected))
        for key in set(ranks[0]) - set(expected):  # unused parameters: averaged as zeros, like DDP
            assert key.startswith("grad.") and not ranks[0][key].any(), key
        for key, value in expected.items():
            for got in ranks:
                torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-6, msg=f"{name}: {key}")
        assert any(k.startswith("grad.towers.") for k in expected)  # gradients reached the towers

    def test_trainer_under_two_processes_matches_one(spawned, toy_host):
        """The unchanged trainer under 2 processes (each half of every batch, losses gathered, gradients
        averaged, rank 0 writing) ends with the weights of a 1-process run."""
        from cl_core.runs import train

        spec = spawned / "one.toml"
        spec.write_text(TOY_SPEC.format(out=spawned / "runs", name="one"))
        train(spec, host=toy_host, log=lambda m: None)
        one = load_file(str(spawned / "runs" / "one" / "model.safetensors"))
        two = load_file(str(spawned / "runs" / "two" / "model.safetensors"))
        assert one.keys() == two.keys()
        for key in one:
            torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-5, msg=key)
        lines = (spawned / "runs" / "two" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == sorted({json.loads(x)["step"] for x in lines})


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main(*sys.argv[1:])
