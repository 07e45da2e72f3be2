"""Contract test classes (see :mod:`cl_core.testing`)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import pytest
import tomli_w
import torch

from ..build import BuildContext
from ..errors import SpecError
from ..plugins import PluginHost
from ..registry import Registered
from ..spec.structure import Structurer
from ..types import Targets

HEAVY_MODULES = ("torch", "transformers", "PIL", "numpy", "kornia")


class ComponentContract:
    """Registration and spec checks shared by every kind (no model work)."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    expected_failures: ClassVar[dict[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _expected_failures(self, request: pytest.FixtureRequest) -> None:
        reason = self.expected_failures.get(request.node.originalname)
        if reason:
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))

    @pytest.fixture
    def host(self) -> PluginHost:
        return PluginHost(only=[self.name.split(".", 1)[0]], strict=True)

    @pytest.fixture
    def registered(self, host: PluginHost) -> Registered:
        return host.registry().get(self.kind, self.name)

    @pytest.fixture
    def params(self, registered: Registered) -> Any:
        """Override to return a tiny Params instance; the default is the Params defaults."""
        return registered.info.params()

    @pytest.fixture
    def build_context(self) -> BuildContext:
        return BuildContext()

    @pytest.fixture
    def component(self, registered: Registered, params: Any, build_context: BuildContext) -> Any:
        torch.manual_seed(0)
        return registered.info.load_factory()(params, build_context)

    def test_name_is_prefixed_and_well_formed(self, registered: Registered) -> None:
        from ..registry import NAME_RE

        assert NAME_RE.match(registered.name), registered.name
        assert registered.name.split(".")[0] == registered.plugin

    def test_params_is_frozen_attrs_without_type_field(self, registered: Registered, params: Any) -> None:
        cls = registered.info.params
        assert attrs.has(cls) and isinstance(params, cls)
        assert "type" not in attrs.fields_dict(cls)
        instance = params
        fields = attrs.fields(cls)
        if fields:
            with pytest.raises(attrs.exceptions.FrozenInstanceError):
                setattr(instance, fields[0].name, getattr(instance, fields[0].name))

    def test_params_round_trip_through_toml(self, registered: Registered, params: Any, host: PluginHost) -> None:
        from ..spec import CONVERTER, _drop_none

        table = _drop_none(CONVERTER.unstructure(params))
        data = tomllib.loads(tomli_w.dumps({"x": {"type": self.name, **table}}))["x"]
        structurer = Structurer(host.registry(), CONVERTER)
        ref_cls = _ref_class(self.kind)
        ok, ref = structurer.component(data, ref_cls, "x")
        assert ok, [p.render() for p in structurer.problems]
        assert ref.params == params

    def test_unknown_param_is_reported_with_its_path(self, registered: Registered, host: PluginHost) -> None:
        from ..spec import CONVERTER

        fields = [f.name for f in attrs.fields(registered.info.params)]
        structurer = Structurer(host.registry(), CONVERTER)
        bogus = (fields[0] + "x") if fields else "no_such_parameter"
        ok, _ = structurer.component({"type": self.name, bogus: 1}, _ref_class(self.kind), "x")
        assert not ok
        problem = structurer.problems[0]
        assert problem.path == f"x.{bogus}"
        assert "unknown parameter" in problem.message
        if fields:
            assert repr(fields[0]) in problem.message  # did you mean

    def test_plugin_module_import_is_light(self, registered: Registered, host: PluginHost) -> None:
        module = host.plugin_module(registered.plugin) or _plugin_module(registered)
        code = (f"import sys, importlib; importlib.import_module({module!r}); "
                f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "", f"{module} imports heavy modules: {out.stdout.strip()}"

    def test_summary_and_docstring_present(self, registered: Registered) -> None:
        assert registered.info.summary.strip()
        assert (registered.info.params.__doc__ or "").strip()


def _ref_class(kind: str):
    from ..spec.model import ref_class

    return ref_class(kind)


def _plugin_module(registered: Registered) -> str:
    import importlib.metadata as md

    for ep in md.entry_points(group="cl_core"):
        if ep.name == registered.plugin:
            return ep.value.split(":")[0]
    raise AssertionError(f"no entry point for plugin {registered.plugin}")


class EncoderContract(ComponentContract):
    """Encoders: ``prepare`` then ``encode`` gives ``[B, embed_dim]``; deterministic in eval; trainable."""

    #: the encoder is frozen by design (a locked tower): nothing of it trains
    frozen: ClassVar[bool] = False

    kind = "encoder"

    @pytest.fixture
    def items(self) -> list[Any]:
        raise NotImplementedError("override the `items` fixture with a few raw inputs for this encoder")

    def test_output_is_batch_by_embed_dim(self, component, items) -> None:
        component.eval()
        out = component.encode(component.prepare(items))
        assert out.shape == (len(items), component.embed_dim)
        assert torch.isfinite(out).all()

    def test_eval_mode_is_deterministic(self, component, items) -> None:
        component.eval()
        with torch.no_grad():
            a = component.encode(component.prepare(items))
            b = component.encode(component.prepare(items))
        torch.testing.assert_close(a, b)

    def test_gradients_reach_trainable_parameters(self, component, items) -> None:
        component.train()
        if component.provides_tokens:  # parameters that only serve the token states (CoCa's captioning pooler)
            states = component.encode_states(component.prepare(items))
            out = states.embedding if states.tokens is None else \
                torch.cat([states.embedding.flatten(), states.tokens.flatten()])
        else:
            out = component.encode(component.prepare(items))
        if self.frozen:  # a locked tower: nothing trains and nothing records a graph
            assert not out.requires_grad and not any(p.requires_grad for p in component.parameters())
            return
        out.pow(2).sum().backward()
        trainable = [(n, p) for n, p in component.named_parameters() if p.requires_grad]
        assert trainable, "an encoder with nothing to train"
        without = [n for n, p in trainable if p.grad is None]
        assert not without, f"no gradient reached: {without[:5]}"

    def test_state_dict_round_trips_through_safetensors(self, component, items, registered, params, build_context,
                                                        tmp_path) -> None:
        from safetensors.torch import load_file, save_file

        component.eval()
        path = tmp_path / "w.safetensors"
        save_file({k: v.detach().contiguous().clone() for k, v in component.state_dict().items()}, str(path))
        torch.manual_seed(123)  # a different init
        twin = registered.info.load_factory()(params, build_context)
        twin.load_state_dict(load_file(str(path)))
        twin.eval()
        with torch.no_grad():
            torch.testing.assert_close(twin.encode(twin.prepare(items)), component.encode(component.prepare(items)))

    def test_empty_batch_is_rejected(self, component) -> None:
        with pytest.raises((ValueError, IndexError, RuntimeError)):
            component.encode(component.prepare([]))


class ScorerContract(ComponentContract):
    """Scorers: ``[Q, C]`` scores; row i depends on query i only; energy is minus the score."""

    kind = "scorer"
    dim: ClassVar[int] = 8

    def test_shape_and_energy(self, component) -> None:
        q, k = torch.randn(3, self.dim), torch.randn(5, self.dim)
        s = component.score(q, k)
        assert s.shape == (3, 5)
        torch.testing.assert_close(component.energy(q, k), -s)
        torch.testing.assert_close(component.log_prob(q, k).exp().sum(1), torch.ones(3))
        assert torch.equal(component.argmin(q, k), s.argmax(1))

    def test_rows_are_independent(self, component) -> None:
        q, k = torch.randn(4, self.dim), torch.randn(6, self.dim)
        full = component.score(q, k)
        torch.testing.assert_close(component.score(q[2:3], k), full[2:3])

    def test_gradients_reach_inputs(self, component) -> None:
        q = torch.randn(3, self.dim, requires_grad=True)
        k = torch.randn(4, self.dim, requires_grad=True)
        component.score(q, k).sum().backward()
        assert q.grad is not None and k.grad is not None
        assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()

    def test_mismatched_widths_are_rejected(self, component) -> None:
        with pytest.raises(ValueError, match="width"):
            component.score(torch.randn(2, self.dim), torch.randn(2, self.dim + 1))

    def test_empty_inputs_are_rejected(self, component) -> None:
        with pytest.raises(ValueError, match="empty"):
            component.score(torch.randn(0, self.dim), torch.randn(2, self.dim))

    def test_finite_gradients_at_identical_inputs(self, component) -> None:
        """A query identical to its candidate (distance 0) still gives finite gradients (case 2)."""
        q = torch.randn(3, self.dim)
        k = q.clone().requires_grad_()
        q = q.requires_grad_()
        component.score(q, k).sum().backward()
        assert q.grad is not None and k.grad is not None
        assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
        for name, param in component.named_parameters():
            if param.grad is not None:
                assert torch.isfinite(param.grad).all(), name

    def reference(self, component, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor | None:
        """Override: the scores ``[Q, C]`` of float64 ``queries`` and ``candidates`` computed independently
        (e.g. by a loop over pairs). None skips :meth:`test_matches_float64_reference`."""
        return None

    def test_matches_float64_reference(self, component) -> None:
        g = torch.Generator().manual_seed(7)
        q = torch.randn(4, self.dim, generator=g, dtype=torch.float64)
        k = torch.randn(5, self.dim, generator=g, dtype=torch.float64)
        expected = self.reference(component, q, k)
        if expected is None:
            pytest.skip("no float64 reference given (override `reference`)")
        got = component.to(torch.float64).score(q, k)
        # 1e-7: float32 parameters (a logit scale of log(1/0.07)) are rounded before the cast to float64
        torch.testing.assert_close(got, expected.to(got.dtype), rtol=1e-7, atol=1e-9)
        got32 = component.to(torch.float32).score(q.float(), k.float())
        torch.testing.assert_close(got32.double(), expected, rtol=1e-4, atol=1e-4)


class LossContract(ComponentContract):
    """Losses: finite scalar and gradients; aligned pairs beat shuffled ones; permutation invariant;
    bad targets and empty batches rejected; optionally a float64 reference value.

    Hooks: :meth:`score_pairs` (how the contract turns unit query/candidate embeddings into scores; the
    default is a cosine scorer with scale 10, distance losses return minus distances), :meth:`_targets`
    and :meth:`reference`.
    """

    kind = "loss"
    batch: ClassVar[int] = 8
    dim: ClassVar[int] = 16

    def score_pairs(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores ``[Q, C]`` the contract feeds the loss (override for distance-based losses)."""
        return 10 * queries @ candidates.t()

    def _scores(self, aligned: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        q = torch.nn.functional.normalize(torch.randn(self.batch, self.dim, generator=g), dim=1)
        noise = 0.1 * torch.randn(self.batch, self.dim, generator=g)
        k = q + noise if aligned else q[torch.randperm(self.batch, generator=g)] + noise
        return q, torch.nn.functional.normalize(k, dim=1)

    def _targets(self) -> Targets:
        return Targets(positive=torch.arange(self.batch))

    def test_finite_scalar_and_gradients(self, component) -> None:
        q, k = self._scores(True)
        scores = self.score_pairs(q, k).detach().requires_grad_()
        out = component(scores, self._targets())
        assert out.value.dim() == 0 and torch.isfinite(out.value)
        out.value.backward()
        assert scores.grad is not None and torch.isfinite(scores.grad).all()

    def test_aligned_pairs_score_better_than_shuffled(self, component) -> None:
        good = component(self.score_pairs(*self._scores(True)), self._targets()).value
        bad = component(self.score_pairs(*self._scores(False)), self._targets()).value
        assert good < bad

    def _pair(self, aligned: bool):
        q, k = self._scores(aligned)
        return q, k.t()

    def test_batch_permutation_invariance(self, component) -> None:
        q, k = self._scores(True)
        perm = torch.randperm(self.batch, generator=torch.Generator().manual_seed(1))
        targets = self._targets()
        a = component(self.score_pairs(q, k), targets).value
        permuted = Targets(positive=torch.argsort(perm)[targets.positive[perm]],
                           labels=None if targets.labels is None else targets.labels[perm])
        b = component(self.score_pairs(q[perm], k[perm]), permuted).value
        torch.testing.assert_close(a, b)

    def test_wrong_target_shape_is_rejected(self, component) -> None:
        q, k = self._scores(True)
        with pytest.raises(ValueError, match="positive"):
            component(self.score_pairs(q, k), Targets(positive=torch.arange(self.batch + 1)))

    def test_wrong_label_length_is_rejected(self, component) -> None:
        q, k = self._scores(True)
        targets = Targets(positive=self._targets().positive, labels=torch.zeros(self.batch + 1, dtype=torch.long))
        with pytest.raises(ValueError, match="labels"):
            component(self.score_pairs(q, k), targets)

    def test_empty_batch_is_rejected(self, component) -> None:
        with pytest.raises(ValueError):
            component(torch.zeros(0, self.batch), Targets(positive=torch.zeros(0, dtype=torch.long)))

    def reference(self, scores: torch.Tensor, targets: Targets) -> float | None:
        """Override: the loss of float64 ``scores`` and ``targets`` computed independently (loops, the
        paper's formula). None skips :meth:`test_matches_float64_reference`."""
        return None

    def test_matches_float64_reference(self, component) -> None:
        g = torch.Generator().manual_seed(3)
        q = torch.nn.functional.normalize(torch.randn(self.batch, self.dim, generator=g, dtype=torch.float64), dim=1)
        k = torch.nn.functional.normalize(q + 0.5 * torch.randn(q.shape, generator=g, dtype=torch.float64), dim=1)
        scores, targets = self.score_pairs(q, k), self._targets()
        expected = self.reference(scores, targets)
        if expected is None:
            pytest.skip("no float64 reference given (override `reference`)")
        got64 = component.to(torch.float64)(scores, targets).value
        assert got64.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
        got32 = component.to(torch.float32)(scores.float(), targets).value
        assert got32.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


class SamplerContract(ComponentContract):
    """Samplers: same generator state, same batches; ``start`` skips exactly; sizes respected."""

    kind = "sampler"

    @pytest.fixture
    def source(self):
        raise NotImplementedError("override `source` with a small DataSource")

    def _draw(self, component, source, seed: int, start: int = 0):
        g = torch.Generator().manual_seed(seed)
        return [b.indices.tolist() for b in component.batches(source, generator=g, start=start)]

    def test_same_seed_same_batches(self, component, source) -> None:
        assert self._draw(component, source, 0) == self._draw(component, source, 0)
        assert self._draw(component, source, 0) != self._draw(component, source, 1)

    def test_start_skips_batches(self, component, source) -> None:
        full = self._draw(component, source, 3)
        assert self._draw(component, source, 3, start=1) == full[1:]

    def test_num_batches_matches(self, component, source) -> None:
        assert len(self._draw(component, source, 0)) == component.num_batches(source)


def _probe_batches(source: Any) -> list[list[int]]:
    """Example indices the dataset contract asks ``get`` for: the first and the last example, or the first and
    the last of each group when the source is grouped (a sampler with ``mix`` never mixes groups in a batch)."""
    import numpy as np

    groups = getattr(source, "groups", None)
    if groups is None:
        return [[0, len(source) - 1]]
    groups = np.asarray(groups)
    assert groups.shape == (len(source),), f"groups has shape {groups.shape} for {len(source)} examples"
    names = getattr(source, "group_names", None)
    assert names is None or int(groups.max()) < len(names), "a group without a name in group_names"
    return [[int(rows[0]), int(rows[-1])] for rows in (np.flatnonzero(groups == g) for g in np.unique(groups))]


class DatasetContract(ComponentContract):
    """Datasets: a "train" split; ``get`` returns every field for every index; labels line up.

    A grouped split (``groups`` set: several datasets, or pair types as in ImageBind) is asked for one group at a
    time, and a group's batch may carry only some of the fields (say, the two roles of its pair type).
    """

    kind = "dataset"

    def test_splits_have_consistent_fields(self, component) -> None:
        splits = component.splits()
        assert "train" in splits
        for name, source in splits.items():
            assert len(source) > 0, name
            for rows in _probe_batches(source):
                got = source.get(rows)
                if getattr(source, "groups", None) is None:
                    assert set(got) >= set(source.fields)
                else:
                    assert got and set(got) <= set(source.fields), f"{name}: {sorted(got)} for {source.fields}"
                assert all(len(v) == len(rows) for v in got.values())
            if source.labels is not None:
                assert len(source.labels) == len(source)
                if source.class_names is not None:
                    assert int(source.labels.max()) < len(source.class_names)
            if source.class_descriptions is not None:
                assert source.class_names is not None, "class_descriptions without class_names"
                assert len(source.class_descriptions) == len(source.class_names)
                assert all(isinstance(t, str) and t for entry in source.class_descriptions for t in entry)


class EvaluatorContract(ComponentContract):
    """Evaluators: named finite metrics, JSON-serialisable, deterministic; the pipeline is left as it was
    (weights and train/eval mode); files go only into ``ctx.plots_dir``.

    Override the ``pipeline`` fixture with a small trained or freshly built pipeline the evaluator can
    measure, and ``dataset`` if it is not ``pipeline.dataset``.
    """

    kind = "evaluator"

    @pytest.fixture
    def pipeline(self) -> Any:
        raise NotImplementedError("override the `pipeline` fixture with a small pipeline to evaluate")

    @pytest.fixture
    def dataset(self, pipeline: Any) -> Any:
        if pipeline.dataset is None:
            raise NotImplementedError("override `dataset`, or build `pipeline` with its dataset")
        return pipeline.dataset

    def _ctx(self, plots_dir: Any = None) -> Any:
        from ..components import EvalContext

        return EvalContext(device=torch.device("cpu"), plots_dir=plots_dir, batch_size=4)

    def test_returns_named_finite_floats(self, component, pipeline, dataset) -> None:
        import json
        import math

        results = component.evaluate(pipeline, dataset, self._ctx())
        assert isinstance(results, dict) and results, "an evaluator must return at least one metric"
        for key, value in results.items():
            assert isinstance(key, str) and key.strip() and key == key.strip(), repr(key)
            assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{key}: {type(value).__name__}"
            assert math.isfinite(value), f"{key} = {value}"
        json.dumps(results)  # goes into metrics.jsonl

    def test_is_deterministic(self, component, pipeline, dataset) -> None:
        assert component.evaluate(pipeline, dataset, self._ctx()) == component.evaluate(pipeline, dataset,
                                                                                        self._ctx())

    def test_leaves_the_pipeline_as_it_was(self, component, pipeline, dataset) -> None:
        before = {k: v.detach().clone() for k, v in pipeline.state_dict().items()}
        pipeline.train()
        component.evaluate(pipeline, dataset, self._ctx())
        assert pipeline.training, "evaluate() must restore train mode"
        after = pipeline.state_dict()
        assert before.keys() == after.keys()
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert not changed, f"evaluate() changed weights: {changed[:5]}"

    def test_writes_files_only_into_plots_dir(self, component, pipeline, dataset, tmp_path, monkeypatch) -> None:
        cwd = tmp_path / "cwd"
        cwd.mkdir()
        monkeypatch.chdir(cwd)
        component.evaluate(pipeline, dataset, self._ctx(None))
        plots = tmp_path / "plots"
        component.evaluate(pipeline, dataset, self._ctx(plots))
        assert not any(cwd.iterdir()), f"files written outside plots_dir: {sorted(p.name for p in cwd.iterdir())}"


class DecoderContract(ComponentContract):
    """Decoders: one string per embedding; ``max_length`` respected; deterministic in eval mode; bad
    inputs rejected; the weights round-trip through safetensors.

    ``embed_dim`` must match the decoder's params; :meth:`length` counts the units ``max_length`` limits
    (default: whitespace-separated words; override with the decoder's tokenizer).
    """

    kind = "decoder"
    embed_dim: ClassVar[int] = 4

    def length(self, text: str) -> int:
        """Length of a decoded string in the units of ``max_length``."""
        return len(text.split())

    def _embeddings(self, n: int = 3) -> torch.Tensor:
        return torch.randn(n, self.embed_dim, generator=torch.Generator().manual_seed(0))

    def test_one_string_per_embedding(self, component) -> None:
        component.eval()
        out = component.decode(self.condition(3), max_length=8)
        assert isinstance(out, list) and len(out) == 3 and all(isinstance(t, str) for t in out)

    def test_max_length_is_respected(self, component) -> None:
        component.eval()
        for max_length in (1, 2, 5):
            out = component.decode(self.condition(4), max_length=max_length)
            too_long = [t for t in out if self.length(t) > max_length]
            assert not too_long, f"max_length={max_length}: {too_long}"

    def test_eval_mode_is_deterministic(self, component) -> None:
        component.eval()
        x = self.condition(4)
        with torch.no_grad():
            assert component.decode(x, max_length=6) == component.decode(x, max_length=6)

    def test_bad_inputs_are_rejected(self, component) -> None:
        component.eval()
        with pytest.raises(ValueError):
            component.decode(self._embeddings(2), max_length=0)
        with pytest.raises((ValueError, FloatingPointError)):
            component.decode(torch.full((2, self.embed_dim), float("nan")), max_length=4)
        with pytest.raises(ValueError):
            component.decode(torch.zeros(self.embed_dim), max_length=4)

    def test_state_dict_round_trips_through_safetensors(self, component, registered, params, build_context,
                                                        tmp_path) -> None:
        from safetensors.torch import load_file, save_file

        component.eval()
        path = tmp_path / "d.safetensors"
        save_file({k: v.detach().contiguous().clone() for k, v in component.state_dict().items()}, str(path))
        torch.manual_seed(321)
        twin = registered.info.load_factory()(params, build_context)
        twin.load_state_dict(load_file(str(path)))
        twin.eval()
        x = self.condition(4)
        assert twin.decode(x, max_length=6) == component.decode(x, max_length=6)

    # -- trainable decoders (``trainable = True``): the caption objective's side of the contract ---------------
    captions: ClassVar[tuple[str, ...]] = ("a red heart", "a dog face", "a smiling cat with heart eyes")

    def condition(self, n: int = 3) -> Any:
        """What the decoder is conditioned on: ``[n, embed_dim]`` embeddings, with ``[n, 3, embed_dim]`` token
        states for a decoder that ``reads_tokens``. Override for other shapes."""
        from ..types import EncoderOutput

        g = torch.Generator().manual_seed(1)
        tokens = torch.randn(n, 3, self.embed_dim, generator=g)
        return EncoderOutput(self._embeddings(n), tokens=tokens if getattr(self, "_reads_tokens", False) else None)

    @pytest.fixture(autouse=True)
    def _condition_shape(self, component) -> None:
        self._reads_tokens = bool(getattr(component, "reads_tokens", False))

    def _trainable(self, component) -> None:
        if not component.trainable:
            pytest.skip("not a trainable decoder")

    def caption_inputs(self, component, captions: Sequence[str]) -> tuple[Any, Any]:
        """``(targets, text)`` the caption loss of ``captions`` takes: ``prepare``'s targets and no text states. A
        decoder that ``reads_target_states`` continues its target role's encoder instead: override this to give
        ``({}, that encoder's encode_states() output)``."""
        if getattr(component, "reads_target_states", False):
            raise NotImplementedError("override caption_inputs() with the target role's encoder output")
        return component.prepare(list(captions)), None

    def test_prepare_gives_one_row_per_caption(self, component) -> None:
        self._trainable(component)
        if component.reads_target_states:
            pytest.skip("its targets are the target role's encoder output (caption_inputs)")
        prepared = component.prepare(list(self.captions))
        assert prepared and all(v.shape[0] == len(self.captions) for v in prepared.values())
        assert all(v.device.type == "cpu" for v in prepared.values())

    def test_caption_loss_is_a_finite_scalar_with_gradients(self, component) -> None:
        self._trainable(component)
        component.train()
        out = component.caption_loss(self.condition(len(self.captions)), *self.caption_inputs(component, self.captions))
        assert out.value.dim() == 0 and torch.isfinite(out.value)
        out.value.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in component.parameters()), \
            "the caption loss must reach the decoder's weights"

    def test_teacher_forcing_learns_a_fixed_batch(self, component) -> None:
        self._trainable(component)
        torch.manual_seed(0)
        component.train()
        condition = self.condition(len(self.captions))
        trainable = [p for p in component.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=1e-2)
        first = None
        for _ in range(30):  # the inputs anew each step: a target role's states carry a graph of their own
            value = component.caption_loss(condition, *self.caption_inputs(component, self.captions)).value
            first = float(value.detach()) if first is None else first
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        last = float(component.caption_loss(condition, *self.caption_inputs(component, self.captions)).value)
        assert last < first * 0.8, f"30 steps on one batch should lower the caption loss: {first:.4f} -> {last:.4f}"

    def test_caption_loss_refuses_mismatched_rows(self, component) -> None:
        self._trainable(component)
        with pytest.raises(ValueError):
            component.caption_loss(self.condition(2), *self.caption_inputs(component, self.captions))


class ObjectiveContract(ComponentContract):
    """Objectives: declared roles that make sense, a finite scalar value that reaches the encoders' outputs,
    detached scalar parts, deterministic in eval mode, and a ``prepare`` that draws no global randomness.

    Override ``build_context`` with the encoders (and decoder) the objective is built against, and
    ``encoded_batch`` with an :class:`~cl_core.components.EncodedBatch` of those roles (outputs that require
    gradients, so the test can see the value depends on them). ``batch`` (a raw
    :class:`~cl_core.types.Batch`) is needed only by objectives that prepare inputs of their own.
    """

    kind = "objective"

    @pytest.fixture
    def encoded_batch(self) -> Any:
        raise NotImplementedError("override the `encoded_batch` fixture with an EncodedBatch of the objective's roles")

    @pytest.fixture
    def batch(self) -> Any:
        return None

    def test_declares_its_roles(self, component) -> None:
        import re

        # an objective reads encoder roles, or only raw items it prepares itself (a language model's texts)
        assert component.roles or component.input_roles
        assert all(isinstance(r, str) and r for r in (*component.roles, *component.input_roles))
        assert set(component.token_roles) <= set(component.roles)
        assert set(component.second_view_roles) <= set(component.roles)
        assert component.weight >= 0
        assert re.match(r"^[a-z0-9][a-z0-9_/#-]*$", component.name), component.name

    def test_value_is_a_finite_scalar_that_reaches_the_outputs(self, component, encoded_batch) -> None:
        component.train()
        out = component.compute(encoded_batch)
        assert out.value.dim() == 0 and torch.isfinite(out.value)
        leaves = [o.embedding for o in encoded_batch.outputs.values() if o.embedding.requires_grad]
        leaves += [o.tokens for o in encoded_batch.outputs.values() if o.tokens is not None and o.tokens.requires_grad]
        if leaves:
            grads = torch.autograd.grad(out.value, leaves, allow_unused=True)
            assert any(g is not None and g.abs().sum() > 0 for g in grads), "the value ignores every encoder output"

    def test_parts_are_detached_scalars(self, component, encoded_batch) -> None:
        out = component.compute(encoded_batch)
        for name, value in out.parts.items():
            assert value.dim() == 0 and not value.requires_grad, name

    def test_eval_mode_is_deterministic(self, component, encoded_batch) -> None:
        component.eval()
        with torch.no_grad():
            assert torch.equal(component.compute(encoded_batch).value, component.compute(encoded_batch).value)

    def test_prepare_draws_no_global_randomness(self, component, batch) -> None:
        if batch is None:
            pytest.skip("no raw batch given (the objective prepares nothing of its own)")
        state = torch.get_rng_state()
        component.prepare(batch)
        assert torch.equal(state, torch.get_rng_state()), "prepare() runs in the data thread: no global RNG"


__all__ = ["ComponentContract", "EncoderContract", "ScorerContract", "LossContract", "SamplerContract",
           "DatasetContract", "EvaluatorContract", "DecoderContract", "ObjectiveContract", "SpecError"]
