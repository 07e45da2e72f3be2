"""Pipeline: the assembled components of one spec, as one ``nn.Module`` with one state dict."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from .components import CandidateSet, Dataset, Decoder, Encoder, Evaluator, Loss, Sampler, Scorer
from .spec import PipelineSpec
from .types import Batch, LossOutput, Targets


class Pipeline(nn.Module):
    """Encoders, scorer, loss and optional decoder (modules, saved in ``model.safetensors`` with keys
    ``encoders.<role>.*``, ``scorer.*``, ``loss.*``, ``decoder.*``), plus the dataset, sampler and
    evaluators the spec names (not modules, not saved).

    The first encoder role in the spec is the query side, the second the candidate side; row ``i`` of
    both sides of a batch is a positive pair. With a single encoder both sides share it. When the second
    role is a :class:`~cl_core.components.CandidateSet` (class vectors), every query is scored against all
    candidates and its label names the positive column.
    """

    def __init__(
        self,
        *,
        spec: PipelineSpec,
        dataset: Dataset | None,
        sampler: Sampler | None,
        encoders: Mapping[str, Encoder],
        scorer: Scorer,
        loss: Loss,
        decoder: Decoder | None = None,
        evaluators: Sequence[Evaluator] = (),
    ) -> None:
        super().__init__()
        if not encoders:
            raise ValueError("a pipeline needs at least one encoder")
        self.spec = spec
        self.dataset = dataset
        self.sampler = sampler
        self.encoders = nn.ModuleDict(dict(encoders))
        self.scorer = scorer
        self.loss = loss
        self.decoder = decoder
        self.evaluators = list(evaluators)

    @property
    def roles(self) -> tuple[str, str]:
        """(query role, candidate role)."""
        names = list(self.encoders.keys())
        return names[0], names[1] if len(names) > 1 else names[0]

    def encoder(self, role: str) -> Encoder:
        """The encoder of ``role`` (typed access to ``encoders``)."""
        return cast(Encoder, self.encoders[role])

    def candidate_set(self) -> CandidateSet | None:
        """The candidate-side encoder when it is a fixed :class:`CandidateSet`, else None."""
        candidate = self.encoder(self.roles[1])
        return candidate if isinstance(candidate, CandidateSet) and len(self.encoders) > 1 else None

    def input_roles(self) -> list[str]:
        """The roles whose raw items a training batch must carry: the query role and, unless it is a fixed
        candidate set, the candidate role."""
        q_role, k_role = self.roles
        return [q_role] if self.candidate_set() is not None else list(dict.fromkeys([q_role, k_role]))

    def prepare(self, batch: Batch) -> dict[str, dict[str, Tensor]]:
        """Run each encoder's ``prepare`` on its raw items (CPU work of the data path). A candidate set needs
        no inputs: its candidates are fixed."""
        return {role: self.encoder(role).prepare(batch.inputs[role]) for role in self.input_roles()}

    def _targets(self, rows: int, labels: Tensor | None, device: torch.device) -> Targets:
        if self.candidate_set() is not None:
            if labels is None:
                raise ValueError("a candidate set needs batch labels: the index of each query's positive candidate")
            return Targets(positive=labels.to(device))
        positive = torch.arange(rows, device=device)
        return Targets(positive=positive, labels=labels.to(device) if labels is not None else None)

    def _candidates(self, prepared: Mapping[str, Mapping[str, Tensor]], device: torch.device) -> Tensor:
        candidate_set = self.candidate_set()
        if candidate_set is not None:
            return candidate_set.candidates()
        k_role = self.roles[1]
        return self.encoder(k_role).encode(_to(prepared[k_role], device))

    def _auxiliary_key(self, role: str, name: str) -> str:
        """The logged name of an encoder's auxiliary loss: prefixed with its role when there are several."""
        return name if len(self.encoders) == 1 else f"{role}/{name}"

    def _auxiliary(self) -> dict[str, Tensor]:
        parts: dict[str, Tensor] = {}
        for role, encoder in self.encoders.items():
            for name, value in cast(Encoder, encoder).auxiliary_losses().items():
                parts[self._auxiliary_key(role, name)] = value
        return parts

    def training_loss(
        self, prepared: Mapping[str, Mapping[str, Tensor]], labels: Tensor | None, device: torch.device
    ) -> LossOutput:
        """Encode both sides of a prepared batch and compute the loss (plus any encoder auxiliary losses)."""
        queries = self.encoder(self.roles[0]).encode(_to(prepared[self.roles[0]], device))
        candidates = self._candidates(prepared, device)
        out = self.loss.compute(queries, candidates, self.scorer, self._targets(queries.shape[0], labels, device))
        return _with_auxiliary(out, self._auxiliary())

    def grad_cache_backward(
        self,
        prepared: Mapping[str, Mapping[str, Tensor]],
        labels: Tensor | None,
        device: torch.device,
        chunk: int,
        scale: Callable[[Tensor], Tensor],
    ) -> LossOutput:
        """The loss of a batch and its gradients, with encoder activations held for ``chunk`` rows at a time.

        Gradient caching (Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
        Setup"): embed every chunk without gradients, compute the loss on the whole batch and backpropagate it
        to the embeddings, then re-encode each chunk with gradients and backpropagate the cached embedding
        gradients into the encoder. The global RNG is restored per chunk, so dropout masks are the same in
        both passes and the gradients equal those of :meth:`training_loss`. ``scale`` turns a loss into what
        is backpropagated (loss scaling, accumulation). Returns the (unscaled) loss.
        """
        roles = [self.roles[0]] if self.candidate_set() is not None else list(dict.fromkeys(self.roles))
        states: dict[str, list[tuple[dict[str, Tensor], Any]]] = {}
        cached: dict[str, Tensor] = {}
        with torch.no_grad():
            for role in roles:
                inputs = _to(prepared[role], device)
                rows = next(iter(inputs.values())).shape[0]
                states[role], pieces = [], []
                for start in range(0, rows, chunk):
                    piece = {k: v[start : start + chunk] for k, v in inputs.items()}
                    states[role].append((piece, _rng_state(device)))
                    pieces.append(self.encoder(role).encode(piece))
                    self.encoder(role).auxiliary_losses()  # the no-grad pass only fixes the embeddings
                cached[role] = torch.cat(pieces).detach().requires_grad_(True)
        queries = cached[self.roles[0]]
        candidate_set = self.candidate_set()
        candidates = candidate_set.candidates() if candidate_set is not None else cached[self.roles[1]]
        out = self.loss.compute(queries, candidates, self.scorer, self._targets(queries.shape[0], labels, device))
        scale(out.value).backward()
        total = queries.shape[0]
        auxiliary: dict[str, Tensor] = {}
        for role in roles:
            grads = cached[role].grad
            assert grads is not None  # the loss depends on every embedding
            offset = 0
            for piece, rng in states[role]:
                _set_rng_state(device, rng)
                embeddings = self.encoder(role).encode(piece)
                rows = embeddings.shape[0]
                surrogate = (embeddings * grads[offset : offset + rows].to(embeddings.dtype)).sum()
                for name, value in self.encoder(role).auxiliary_losses().items():
                    # each chunk's auxiliary loss is a mean over its rows: weight it by its share of the batch
                    surrogate = surrogate + scale(value * rows / total)
                    key = self._auxiliary_key(role, name)
                    auxiliary[key] = auxiliary.get(key, 0.0) + value.detach() * rows / total
                surrogate.backward()
                offset += rows
        return _with_auxiliary(LossOutput(out.value.detach(), {k: v.detach() for k, v in out.parts.items()}),
                               auxiliary)

    def post_step(self) -> None:
        """Let components keep their invariants after an optimizer step (e.g. the logit-scale clamp)."""
        for module in self.modules():
            step = getattr(module, "post_step", None) if module is not self else None
            if callable(step):
                step()

    def embed(self, role: str, items: Sequence[Any], *, batch_size: int = 256) -> Tensor:
        """Embeddings ``[len(items), N]`` of raw items with the encoder of ``role`` (eval mode)."""
        if role not in self.encoders:
            raise KeyError(f"no encoder for role {role!r}; roles: {', '.join(self.encoders)}")
        return self.encoder(role).embed(items, batch_size=batch_size)


def _with_auxiliary(out: LossOutput, auxiliary: Mapping[str, Tensor]) -> LossOutput:
    if not auxiliary:
        return out
    total = out.value + sum(auxiliary.values())
    return LossOutput(total, {**out.parts, "contrastive": out.value, **auxiliary})


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _to(inputs: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
