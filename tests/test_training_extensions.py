"""Pluggable training loops, candidate sets, several objectives, gradient caching, mixed-source batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from attrs import frozen
from torch import Tensor, nn

from cl_core._builtin.losses import InfoNCELoss
from cl_core._builtin.samplers import InBatchSampler
from cl_core._builtin.scorers import CosineScorer, DotScorer
from cl_core._builtin.objectives import ContrastiveObjective
from cl_core.components import CandidateSet, DataSource, EncodedBatch, Encoder, Objective, PreparedBatch, TrainingLoop
from cl_core.errors import ClError, DataError, SpecError
from cl_core.pipeline import Pipeline
from cl_core.plugins import PluginHost, hookimpl
from cl_core.registry import ComponentInfo
from cl_core.runs import train
from cl_core.spec import load_spec
from cl_core.types import Batch, LossOutput


class DropoutMLP(Encoder):
    """A small encoder with dropout (so gradient caching must replay the RNG)."""

    def __init__(self, dim_in: int = 6, dim: int = 5):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_in, 16), nn.Dropout(0.3), nn.Linear(16, dim))
        self.dim = dim

    @property
    def embed_dim(self) -> int:
        return self.dim

    def prepare(self, items: Sequence[Any]) -> dict[str, Tensor]:
        return {"x": torch.as_tensor(np.stack(items), dtype=torch.float32)}

    def _encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.net(inputs["x"])


class SquaredNorm(Objective):
    """A second objective over one role's embeddings: their mean squared entry (a stand-in for a regulariser)."""

    embeddings_only = True

    def __init__(self, role: str, weight: float) -> None:
        super().__init__()
        self.roles, self.weight, self.name = (role,), weight, "norm"

    def _compute(self, batch: EncodedBatch) -> LossOutput:
        return LossOutput(batch.embedding(self.roles[0]).pow(2).mean())


class Classes(CandidateSet):
    def __init__(self, count: int, dim: int):
        super().__init__()
        self.table = nn.Parameter(torch.randn(count, dim))

    @property
    def embed_dim(self) -> int:
        return self.table.shape[1]

    def candidates(self) -> Tensor:
        return self.table


def _contrastive(roles, scorer, loss) -> ContrastiveObjective:
    return ContrastiveObjective(roles, loss, scorer, loss_ref=None, scorer_ref=None,  # type: ignore[arg-type]
                                own_loss=False, own_scorer=False)


def _pipeline(encoders: dict[str, Encoder], scorer=None, extra: Sequence[Objective] = ()) -> Pipeline:
    scorer, loss = scorer or CosineScorer(temperature=0.1), InfoNCELoss(symmetric=True)
    roles = tuple(encoders)[:2]
    return Pipeline(spec=None, dataset=None, sampler=None, encoders=encoders,  # type: ignore[arg-type]
                    scorer=scorer, loss=loss, objectives=[_contrastive(roles, scorer, loss), *extra])


def _prepared(pipeline: Pipeline, rows: int, seed: int = 0, labels: Tensor | None = None) -> PreparedBatch:
    g = torch.Generator().manual_seed(seed)
    inputs = {role: {"x": torch.randn(rows, 6, generator=g)} for role in pipeline.encoders
              if pipeline.encoder(role).needs_inputs}
    return PreparedBatch(inputs=inputs, objectives={i: {} for i in range(len(pipeline.objectives))}, labels=labels,
                         rows=rows)


def _grads(pipeline: Pipeline) -> dict[str, Tensor]:
    return {n: p.grad.clone() for n, p in pipeline.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk", [1, 3, 8, 64])
def test_grad_cache_gives_the_direct_loss_and_gradients(chunk):
    torch.manual_seed(0)
    pipeline = _pipeline({"a": DropoutMLP(), "b": DropoutMLP()}, extra=[SquaredNorm("a", 0.5)])
    pipeline.train()
    prepared = _prepared(pipeline, 10)
    device = torch.device("cpu")

    torch.manual_seed(123)
    direct = pipeline.training_loss(prepared, device)
    direct.value.backward()
    want = _grads(pipeline)
    pipeline.zero_grad(set_to_none=True)

    torch.manual_seed(123)
    cached = pipeline.grad_cache_backward(prepared, device, chunk, scale=lambda v: v)
    got = _grads(pipeline)
    torch.testing.assert_close(cached.value, direct.value.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cached.parts["norm"], direct.parts["norm"].detach(), rtol=1e-5, atol=1e-6)
    assert want.keys() == got.keys() and len(want) == 9  # 2 encoders x 2 layers x (weight, bias) + logit scale
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)


def test_grad_cache_scale_is_applied_to_every_gradient():
    torch.manual_seed(0)
    pipeline = _pipeline({"a": DropoutMLP(), "b": DropoutMLP()}, extra=[SquaredNorm("a", 0.5)])
    prepared = _prepared(pipeline, 6)
    torch.manual_seed(5)
    pipeline.grad_cache_backward(prepared, torch.device("cpu"), 2, scale=lambda v: v)
    once = _grads(pipeline)
    pipeline.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    pipeline.grad_cache_backward(prepared, torch.device("cpu"), 2, scale=lambda v: v * 4)
    for name, grad in _grads(pipeline).items():
        torch.testing.assert_close(grad, once[name] * 4, msg=name)


def test_grad_cache_refuses_an_objective_that_reads_more_than_embeddings():
    torch.manual_seed(0)
    reader = SquaredNorm("a", 1.0)
    reader.embeddings_only = False
    pipeline = _pipeline({"a": DropoutMLP(), "b": DropoutMLP()}, extra=[reader])
    with pytest.raises(ValueError, match="norm read more"):
        pipeline.grad_cache_backward(_prepared(pipeline, 4), torch.device("cpu"), 2, scale=lambda v: v)


def test_candidate_set_is_softmax_cross_entropy_over_its_candidates():
    torch.manual_seed(0)
    encoder, classes = DropoutMLP(dim=4).eval(), Classes(3, 4)
    scorer, loss = DotScorer(), InfoNCELoss()
    pipeline = Pipeline(spec=None, dataset=None, sampler=None,  # type: ignore[arg-type]
                        encoders={"q": encoder, "label": classes}, scorer=scorer, loss=loss,
                        objectives=[_contrastive(("q", "label"), scorer, loss)])
    assert pipeline.input_roles() == ["q"] and pipeline.candidate_set() is classes
    labels = torch.tensor([0, 2, 1, 1, 0, 2, 2])
    prepared = _prepared(pipeline, 7, labels=labels)
    out = pipeline.training_loss(prepared, torch.device("cpu"))
    logits = encoder.encode(prepared.inputs["q"]) @ classes.table.T
    torch.testing.assert_close(out.value, F.cross_entropy(logits, labels))
    assert classes.embed(torch.tensor([2, 0]).tolist()).shape == (2, 4)
    with pytest.raises(ValueError, match="labels"):
        pipeline.training_loss(_prepared(pipeline, 7), torch.device("cpu"))
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        classes.prepare([3])


def test_objectives_are_weighted_summed_and_logged_by_name():
    torch.manual_seed(0)
    pipeline = _pipeline({"a": DropoutMLP(), "b": DropoutMLP()}, extra=[SquaredNorm("a", 0.25)]).eval()
    out = pipeline.training_loss(_prepared(pipeline, 5), torch.device("cpu"))
    assert set(out.parts) == {"a-b", "a-b/q2c", "a-b/c2q", "norm"}
    torch.testing.assert_close(out.value, out.parts["a-b"] + 0.25 * out.parts["norm"])
    embedding = pipeline.encoder("a").encode(_prepared(pipeline, 5).inputs["a"])
    torch.testing.assert_close(out.parts["norm"], embedding.pow(2).mean())


def test_a_batch_trains_only_the_objectives_whose_roles_it_carries():
    torch.manual_seed(0)
    encoders = {"image": DropoutMLP(), "audio": DropoutMLP(), "lineart": DropoutMLP()}
    scorer, loss = CosineScorer(temperature=0.1), InfoNCELoss(symmetric=True)
    pipeline = Pipeline(spec=None, dataset=None, sampler=None, encoders=encoders,  # type: ignore[arg-type]
                        scorer=scorer, loss=loss, objectives=[_contrastive(("image", "audio"), scorer, loss),
                                                              _contrastive(("image", "lineart"), scorer, loss)])
    rows = [np.zeros(6, dtype=np.float32)] * 3
    batch = Batch(inputs={"image": rows, "lineart": rows}, labels=None, indices=torch.arange(3))
    prepared = pipeline.prepare(batch)
    assert list(prepared.objectives) == [1] and set(prepared.inputs) == {"image", "lineart"}
    out = pipeline.eval().training_loss(prepared, torch.device("cpu"))
    assert set(out.parts) == {"image-lineart", "image-lineart/q2c", "image-lineart/c2q"}
    with pytest.raises(ValueError, match="trains no objective"):
        pipeline.prepare(Batch(inputs={"audio": rows}, labels=None, indices=torch.arange(3)))


class Grouped(DataSource):
    def __init__(self, sizes: Sequence[int]):
        self.groups = np.concatenate([np.full(n, g) for g, n in enumerate(sizes)]).astype(np.int64)
        self.group_names = [f"g{g}" for g in range(len(sizes))]

    def __len__(self) -> int:
        return len(self.groups)

    def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        return {"x": list(indices)}


class Ungrouped(Grouped):
    def __init__(self):
        super().__init__([8])
        self.size, self.groups = 8, None

    def __len__(self) -> int:
        return self.size


@pytest.mark.parametrize("mix", ["round-robin", "proportional"])
def test_mixed_sources_never_share_a_batch(mix):
    source = Grouped([40, 17, 25])
    sampler = InBatchSampler(4, mix=mix)
    batches = list(sampler.batches(source, generator=torch.Generator().manual_seed(1)))
    assert len(batches) == sampler.num_batches(source)
    groups = [set(source.groups[b.indices.numpy()].tolist()) for b in batches]
    assert all(len(g) == 1 for g in groups)
    order = [g.pop() for g in groups]
    if mix == "round-robin":
        assert len(batches) == 3 * 4 and order == [0, 1, 2] * 4
    else:
        assert [order.count(g) for g in range(3)] == [10, 4, 6]
        assert order != sorted(order)
    again = list(sampler.batches(source, generator=torch.Generator().manual_seed(1), start=5))
    assert [b.indices.tolist() for b in again] == [b.indices.tolist() for b in batches[5:]]


def test_mix_needs_groups_and_big_enough_groups():
    with pytest.raises(DataError, match="several groups"):
        InBatchSampler(4, mix="round-robin").num_batches(Ungrouped())
    with pytest.raises(DataError, match="group 'g1' has 3 examples"):
        InBatchSampler(4, mix="proportional").num_batches(Grouped([8, 3]))


# -- pluggable training loops ------------------------------------------------------------------------

@frozen(kw_only=True)
class CountingParams:
    """``loops.counting``: a training loop that takes ``steps`` plain SGD steps."""

    steps: int = 2


class CountingLoop(TrainingLoop):
    def __init__(self, params: CountingParams, ctx):
        super().__init__(ctx)
        self.pipeline = self.pipeline.to(self.device)  # a loop places the pipeline (see TrainContext)
        self.total_steps = self.steps_per_epoch = params.steps
        self.epochs = 1
        self.optimizer = torch.optim.SGD(self.pipeline.parameters(), lr=0.5)

    def fit(self, plots_dir=None):
        pipeline = self.pipeline
        source = pipeline.dataset.splits()["train"]
        batches = pipeline.sampler.batches(source, generator=torch.Generator().manual_seed(self.seed))
        for _, batch in zip(range(self.total_steps), batches):
            out = pipeline.training_loss(pipeline.prepare(batch), self.device)
            out.value.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
            self.step += 1
            self.write_metrics({"step": self.step, "loss": float(out.value.detach())})
        return self.evaluate(plots_dir)

    def resume(self):
        raise NotImplementedError


class Loops:
    @staticmethod
    @hookimpl
    def cl_trainers():
        yield ComponentInfo(name="loops.counting", params=CountingParams,
                            factory=lambda params, ctx: CountingLoop(params, ctx), summary="Counts SGD steps.")


def test_a_plugin_training_loop_trains_a_run(toy_spec, toy_host: PluginHost):
    toy_host.register(Loops, name="loops")
    path, out = toy_spec()
    text = path.read_text().replace("[trainer]\n", '[trainer]\ntype = "loops.counting"\nsteps = 3\n#', 1)
    text = "\n".join(line for line in text.splitlines() if not line.startswith(("lr", "checkpoint_every",
                                                                                 "progress", "plots")))
    path.write_text(text)
    spec = load_spec(path, toy_host.registry())
    assert spec.trainer.type == "loops.counting" and spec.trainer.params.steps == 3
    result = train(path, host=toy_host, log=lambda m: None)
    assert result.steps == 3
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    assert len([line for line in lines if '"loss"' in line]) == 3
    assert 'type = "loops.counting"' in (out / "run" / "spec.toml").read_text()


def test_trainer_type_defaults_to_adamw_and_unknown_types_are_located(toy_spec, toy_host):
    path, out = toy_spec()
    spec = load_spec(path, toy_host.registry())
    assert spec.trainer.type == "core.adamw" and spec.trainer.params.epochs == 3
    path.write_text(path.read_text().replace("[trainer]\n", '[trainer]\ntype = "core.adamx"\n', 1))
    with pytest.raises(SpecError) as info:
        load_spec(path, toy_host.registry())
    text = str(info.value)
    assert "trainer.type" in text and "core.adamw" in text
    assert not out.exists()


def test_grad_cache_in_a_run_trains_the_same_weights(toy_spec, toy_host):
    from safetensors.torch import load_file

    # fp32 also on a GPU: the claim is the same arithmetic, which bf16 autocast would round differently
    plain = train(toy_spec('precision = "fp32"', name="plain")[0], host=toy_host, log=lambda m: None)
    cached = train(toy_spec('precision = "fp32"\ngrad_cache_chunk = 5', name="cached")[0], host=toy_host,
                   log=lambda m: None)
    a, b = load_file(str(plain.run_dir / "model.safetensors")), load_file(str(cached.run_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)


def test_eval_on_start_reports_the_starting_point_next_to_the_trained_one(toy_spec, toy_host):
    lines: list[str] = []
    result = train(toy_spec("eval_on_start = true\n[[evaluate]]\ntype = \"toy.alignment\"")[0], host=toy_host,
                   log=lines.append)
    assert result.start_results is not None and result.start_results.keys() == result.results.keys()
    key = next(iter(result.results))
    assert result.start_results[key] != result.results[key]
    table = lines[-1]
    assert "start" in table and "trained" in table and f"{result.results[key] - result.start_results[key]:+8.4f}" in table
    card = (result.run_dir / "README.md").read_text()
    assert "| metric | before training | trained |" in card
    assert f"| {key} | {result.start_results[key]:.4f} | {result.results[key]:.4f} |" in card


def test_a_shared_encoder_is_the_same_module_under_both_roles(toy_spec, toy_host, tmp_path):
    from cl_core.build import build_pipeline
    from cl_core.errors import BuildError
    from cl_core.weights import from_pretrained

    path, out = toy_spec()
    path.write_text(path.read_text().replace('[encoders.b]\ntype = "toy.linear"',
                                             '[encoders.b]\ntype = "core.shared"\nrole = "a"'))
    registry = toy_host.registry()
    pipeline = build_pipeline(load_spec(path, registry), registry)
    assert pipeline.encoder("b") is pipeline.encoder("a")
    result = train(path, host=toy_host, log=lambda m: None)
    loaded = from_pretrained(result.run_dir, host=toy_host)
    assert loaded.encoder("b") is loaded.encoder("a")
    torch.testing.assert_close(loaded.encoder("a").proj.weight, loaded.encoder("b").proj.weight)
    path.write_text(path.read_text().replace('role = "a"', 'role = "c"'))
    with pytest.raises(BuildError, match="'c' is not an earlier encoder role"):
        build_pipeline(load_spec(path, registry), registry)


def test_a_factorys_own_error_is_located_by_the_components_spec_path(toy_spec, toy_host, monkeypatch):
    from cl_core.build import build_pipeline

    path, _ = toy_spec()
    registry = toy_host.registry()
    spec = load_spec(path, registry)

    def failing(params, ctx):
        raise DataError("cannot read /data/x.jsonl line 3")

    info = registry.get("dataset", "toy.pairs").info
    monkeypatch.setattr(type(info), "load_factory", lambda self: failing)
    with pytest.raises(DataError, match=r"^data \(toy\.pairs\): cannot read /data/x\.jsonl line 3$"):
        build_pipeline(spec, registry)


def test_eval_of_a_missing_or_unfinished_run_is_a_clear_error(tmp_path, toy_host):
    from cl_core.errors import CheckpointError
    from cl_core.runs import evaluate_run

    with pytest.raises(CheckpointError, match="does not exist"):
        evaluate_run(tmp_path / "nope", host=toy_host)
    with pytest.raises(CheckpointError, match="not a finished run"):
        evaluate_run(tmp_path, host=toy_host)


def test_prepare_threads_keep_the_batches_and_their_order(toy_spec, toy_host):
    """trainer.data_workers = 3 runs prepare in three threads: the weights are those of one thread, bit for bit."""
    from safetensors.torch import load_file

    from cl_core.trainer import _prefetch

    one = train(toy_spec(name="one")[0], host=toy_host, log=lambda m: None)
    three = train(toy_spec("data_workers = 3", name="three")[0], host=toy_host, log=lambda m: None)
    a, b = load_file(str(one.run_dir / "model.safetensors")), load_file(str(three.run_dir / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    import time

    def slow_for_early(i):  # the first batches take longest: order must still hold
        time.sleep(0.02 * (5 - i) if i < 5 else 0)
        return i * 10

    out = list(_prefetch(iter(range(12)), slow_for_early, workers=4))
    assert out == [(i, i * 10) for i in range(12)]

    def fails(i):
        if i == 3:
            raise ValueError("bad item 3")
        return i

    with pytest.raises(ValueError, match="bad item 3"):
        list(_prefetch(iter(range(8)), fails, workers=2))


def test_prepare_processes_give_the_weights_of_one_thread(toy_spec, toy_host):
    """trainer.data_processes = 2 prepares in two spawned workers: the weights are those of the threads, bit for
    bit; a worker prepares a batch as this process does, and an error there is raised here as it was."""
    from safetensors.torch import load_file

    one = train(toy_spec(name="one")[0], host=toy_host, log=lambda m: None)
    two = train(toy_spec("data_processes = 2", name="two")[0], host=toy_host, log=lambda m: None)
    with pytest.warns(UserWarning, match=r"data_processes = 4096 on a machine with \d+ CPU cores"):
        train(toy_spec("data_processes = 4096", name="many", epochs=1)[0], host=toy_host, log=lambda m: None)
    a, b = load_file(str(one.run_dir / "model.safetensors")), load_file(str(two.run_dir / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    import numpy as np

    from cl_core.build import build_pipeline
    from cl_core.prepare_processes import data_path_payload, prepare_in_worker, start_workers
    from cl_core.spec import load_spec
    from cl_core.types import Batch

    registry = toy_host.registry()
    pipeline = build_pipeline(load_spec(toy_spec(name="direct")[0], registry), registry)
    source = pipeline.dataset.splits()["train"]
    batch = next(iter(pipeline.sampler.batches(source, generator=torch.Generator().manual_seed(0))))
    pool = start_workers(data_path_payload(pipeline), 1)
    try:
        got, want = pool.submit(prepare_in_worker, batch).result(), pipeline.prepare(batch)
        assert got.inputs.keys() == want.inputs.keys() and got.rows == want.rows == len(batch)
        assert all(torch.equal(got.inputs[r][k], want.inputs[r][k]) for r in want.inputs for k in want.inputs[r])
        ragged = Batch(inputs={r: [np.zeros(8), np.zeros(5)] for r in batch.inputs}, labels=None,
                       indices=torch.arange(2))
        with pytest.raises(ValueError, match="same shape"):  # raised in the worker, re-raised here as it was
            pool.submit(prepare_in_worker, ragged).result()
    finally:
        pool.shutdown()
    role = next(iter(pipeline.encoders))
    pipeline.encoders[role].hook = lambda x: x  # a plugin's component that does not pickle
    with pytest.raises(ClError, match=r"trainer\.data_processes: .*cannot be copied into worker processes .*lambda.*"
                                      r"trainer\.data_processes = 0"):
        data_path_payload(pipeline)


def test_train_refuses_to_run_inside_a_worker_that_is_importing_its_parents_script(toy_spec, toy_host, monkeypatch):
    """An unguarded script calling train() is run again by each spawned data worker: there it stops at once, with
    the fix, instead of training again (and keeping the parent waiting)."""
    import multiprocessing.process

    monkeypatch.setattr(multiprocessing.process.current_process(), "_inheriting", True, raising=False)
    path, out = toy_spec("data_processes = 2", name="unguarded")
    with pytest.raises(ClError, match=r'under `if __name__ == "__main__":`'):
        train(path, host=toy_host, log=lambda m: None)
    assert not (out / "unguarded").exists()
