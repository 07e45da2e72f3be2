"""Pipeline: the assembled components of one spec, as one ``nn.Module`` with one state dict.

How a batch flows (see docs/concepts.md for the diagram): the sampler yields raw items by role; the
objectives whose roles the batch carries are *active*; :meth:`Pipeline.prepare` runs each needed encoder's
``prepare`` once per role (and each active objective's own ``prepare``, e.g. caption targets) on the CPU;
:meth:`Pipeline.training_loss` encodes each role once on the device (with token states where an objective
reads them) and sums the active objectives' weighted values, logging each by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from .components import (
    CandidateSet,
    Dataset,
    Decoder,
    EncodedBatch,
    Encoder,
    Evaluator,
    Loss,
    Objective,
    PreparedBatch,
    Sampler,
    Scorer,
)
from .components.objective import SECOND_VIEW
from .spec import PipelineSpec
from .types import Batch, EncoderOutput, LossOutput


class Pipeline(nn.Module):
    """Encoders by role, the top-level scorer and loss, a decoder and the objectives (modules, saved in
    ``model.safetensors`` with keys ``encoders.<role>.*``, ``scorer.*``, ``loss.*``, ``decoder.*``,
    ``objectives.<i>.*``), plus the dataset, sampler and evaluators the spec names (not modules, not saved).

    A spec without ``[[objective]]`` tables trains one contrastive objective: ``[loss]`` over the scores
    ``[scorer]`` gives the first two encoder roles (the query and candidate sides; row ``i`` of both is a
    positive pair). A spec with neither objectives nor a loss has nothing to train (its evaluators and
    decoder still run: ``cl eval SPEC``).
    """

    def __init__(
        self,
        *,
        spec: PipelineSpec,
        dataset: Dataset | None,
        sampler: Sampler | None,
        encoders: Mapping[str, Encoder],
        scorer: Scorer | None = None,
        loss: Loss | None = None,
        decoder: Decoder | None = None,
        objectives: Sequence[Objective] = (),
        evaluators: Sequence[Evaluator] = (),
    ) -> None:
        super().__init__()
        if not encoders and decoder is None:
            raise ValueError("a pipeline needs at least one encoder or a decoder")
        self.spec = spec
        self.dataset = dataset
        self.sampler = sampler
        self.encoders = nn.ModuleDict(dict(encoders))
        # Registered in this order so that the parameters (and an optimizer's state) keep the order they
        # had before objectives existed: encoders, scorer, loss, decoder, then what objectives own.
        self.scorer = scorer
        self.loss = loss
        self.decoder = decoder
        self.objectives = nn.ModuleList(objectives)
        self.evaluators = list(evaluators)

    # -- roles ---------------------------------------------------------------------------------------
    @property
    def roles(self) -> tuple[str, ...]:
        """Every encoder role, in spec order."""
        return tuple(self.encoders.keys())

    @property
    def pair_roles(self) -> tuple[str, str]:
        """(query role, candidate role) of the first contrastive objective; without one, the first two encoder
        roles (the same role twice when there is one). What evaluators and plots of a pair use by default."""
        for objective in cast(Sequence[Objective], self.objectives):
            if objective.pair is not None:
                return objective.pair
        names = list(self.encoders.keys())
        return names[0], names[1] if len(names) > 1 else names[0]

    def encoder(self, role: str) -> Encoder:
        """The encoder of ``role`` (typed access to ``encoders``)."""
        return cast(Encoder, self.encoders[role])

    def scorer_for(self, query_role: str, candidate_role: str) -> Scorer | None:
        """The scorer of the contrastive objective over these two roles (either order), else the top-level
        ``[scorer]``, else None (the roles were never scored against each other in training)."""
        for objective in cast(Sequence[Objective], self.objectives):
            if objective.pair is not None and set(objective.pair) == {query_role, candidate_role}:
                return objective.pair_scorer()
        return self.scorer

    def candidate_set(self) -> CandidateSet | None:
        """The encoder of the candidate role of :attr:`pair_roles` when it is a fixed candidate set, else None."""
        query, candidate = self.pair_roles
        encoder = self.encoder(candidate) if candidate in self.encoders else None
        return encoder if isinstance(encoder, CandidateSet) and candidate != query else None

    def _needs_items(self, role: str) -> bool:
        return role not in self.encoders or self.encoder(role).needs_inputs

    def _required(self, objective: Objective) -> list[str]:
        """The batch roles an objective needs raw items of."""
        return [r for r in objective.roles if self._needs_items(r)] + list(objective.input_roles)

    def input_roles(self) -> list[str]:
        """Every batch role some objective needs raw items of (a fixed candidate set needs none)."""
        return list(dict.fromkeys(r for objective in self.objectives for r in self._required(objective)))

    def active_objectives(self, present: Sequence[str]) -> list[int]:
        """Indices of the objectives a batch carrying the roles ``present`` trains."""
        have = set(present)
        return [i for i, objective in enumerate(self.objectives) if have.issuperset(self._required(objective))]

    # -- the training step ---------------------------------------------------------------------------
    def prepare(self, batch: Batch) -> PreparedBatch:
        """The CPU work of the data path: each encoder's ``prepare`` once on its role's raw items, for the roles
        the batch's active objectives read, and each active objective's own ``prepare``.

        Raises:
            ValueError: the batch trains no objective (its roles are named, with what each objective needs).
        """
        active = self.active_objectives(list(batch.inputs))
        if not active:
            needs = "; ".join(f"{o.name} needs {', '.join(self._required(o))}" for o in self.objectives)
            raise ValueError(f"a batch with roles {', '.join(batch.inputs) or 'none'} trains no objective "
                             f"({needs or 'the pipeline has no objectives'})")
        wanted = {r for i in active for r in self.objectives[i].roles}
        inputs = {role: self.encoder(role).prepare(batch.inputs[role])
                  for role in self.encoders if role in wanted and self._needs_items(role)}
        own = {i: self.objectives[i].prepare(batch) for i in active}
        return PreparedBatch(inputs=inputs, objectives=own, labels=batch.labels, rows=len(batch))

    def _plan(self, prepared: PreparedBatch) -> tuple[set[str], set[str], set[str]]:
        """(roles whose token states are read, roles encoded twice, fixed candidate-set roles) of a batch."""
        active = [self.objectives[i] for i in prepared.objectives]
        tokens = {r for o in active for r in o.token_roles}
        twice = {r for o in active for r in o.second_view_roles}
        fixed = {r for o in active for r in o.roles if not self._needs_items(r)}
        return tokens, twice, fixed

    def _encode_role(self, role: str, inputs: Mapping[str, Tensor], tokens: bool) -> EncoderOutput:
        encoder = self.encoder(role)
        return encoder.encode_states(inputs) if tokens else EncoderOutput(encoder.encode(inputs))

    def _fixed_outputs(self, fixed: set[str]) -> dict[str, EncoderOutput]:
        return {role: EncoderOutput(cast(CandidateSet, self.encoder(role)).candidates()) for role in fixed}

    def encode_batch(self, prepared: PreparedBatch, device: torch.device) -> dict[str, EncoderOutput]:
        """Every role of a prepared batch encoded once (in spec order), with token states where an active
        objective reads them, a second pass where one asks for it (``role#2``) and fixed candidate sets."""
        tokens, twice, fixed = self._plan(prepared)
        outputs: dict[str, EncoderOutput] = {}
        for role, inputs in prepared.inputs.items():
            moved = _to(inputs, device)
            outputs[role] = self._encode_role(role, moved, role in tokens)
            if role in twice:
                outputs[role + SECOND_VIEW] = self._encode_role(role, moved, role in tokens)
        outputs.update(self._fixed_outputs(fixed))
        return outputs

    def objectives_loss(self, prepared: PreparedBatch, outputs: Mapping[str, EncoderOutput],
                        device: torch.device) -> LossOutput:
        """The weighted sum of the active objectives on encoded outputs. With one objective its parts are
        logged as it names them; with several, each objective's value as ``<name>`` and its parts as
        ``<name>/<part>``."""
        labels = prepared.labels.to(device) if prepared.labels is not None else None
        fixed = frozenset(self._plan(prepared)[2])
        single = len(self.objectives) == 1
        total: Tensor | None = None
        parts: dict[str, Tensor] = {}
        for index, own in prepared.objectives.items():
            objective = self.objectives[index]
            out = objective.compute(EncodedBatch(outputs, own=_to(own, device), labels=labels, fixed=fixed))
            term = out.value if objective.weight == 1 else objective.weight * out.value
            total = term if total is None else total + term
            if single:
                parts.update(out.parts)
            else:
                parts[objective.name] = out.value.detach()
                parts.update({f"{objective.name}/{k}": v for k, v in out.parts.items()})
        assert total is not None  # prepare() refuses a batch that trains no objective
        return LossOutput(total, parts)

    def training_loss(self, prepared: PreparedBatch, device: torch.device) -> LossOutput:
        """Encode a prepared batch and compute its summed objectives."""
        return self.objectives_loss(prepared, self.encode_batch(prepared, device), device)

    def grad_cache_backward(
        self, prepared: PreparedBatch, device: torch.device, chunk: int, scale: Callable[[Tensor], Tensor],
    ) -> LossOutput:
        """The loss of a batch and its gradients, with encoder activations held for ``chunk`` rows at a time.

        Gradient caching (Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
        Setup"): embed every chunk without gradients, compute the objectives on the whole batch and
        backpropagate them to the embeddings, then re-encode each chunk with gradients and backpropagate the
        cached embedding gradients into the encoder. The global RNG is restored per chunk, so dropout masks are
        the same in both passes and the gradients equal those of :meth:`training_loss`. ``scale`` turns a loss
        into what is backpropagated (loss scaling, accumulation). Returns the (unscaled) loss.

        Raises:
            ValueError: an active objective reads more than the embeddings (token states, its own inputs).
        """
        readers = [self.objectives[i].name for i in prepared.objectives if not self.objectives[i].embeddings_only]
        if readers:
            raise ValueError(f"gradient caching needs objectives that read embeddings only; {', '.join(readers)} "
                             "read more (set trainer.grad_cache_chunk = 0)")
        _, twice, fixed = self._plan(prepared)
        slots = [(role, role) for role in prepared.inputs]
        slots += [(role + SECOND_VIEW, role) for role in prepared.inputs if role in twice]
        states: dict[str, list[tuple[dict[str, Tensor], Any]]] = {}
        cached: dict[str, Tensor] = {}
        with torch.no_grad():
            for slot, role in slots:
                inputs = _to(prepared.inputs[role], device)
                states[slot], pieces = [], []
                for start in range(0, prepared.rows, chunk):
                    piece = {k: v[start : start + chunk] for k, v in inputs.items()}
                    states[slot].append((piece, _rng_state(device)))
                    pieces.append(self.encoder(role).encode(piece))
                cached[slot] = torch.cat(pieces).detach().requires_grad_(True)
        outputs = {slot: EncoderOutput(embedding) for slot, embedding in cached.items()}
        outputs.update(self._fixed_outputs(fixed))
        out = self.objectives_loss(prepared, outputs, device)
        scale(out.value).backward()
        for slot, role in slots:
            grads = cached[slot].grad
            if grads is None:  # no active objective read this slot
                continue
            offset = 0
            for piece, rng in states[slot]:
                _set_rng_state(device, rng)
                embeddings = self.encoder(role).encode(piece)
                rows = embeddings.shape[0]
                (embeddings * grads[offset : offset + rows].to(embeddings.dtype)).sum().backward()
                offset += rows
        return LossOutput(out.value.detach(), {k: v.detach() for k, v in out.parts.items()})

    def post_step(self) -> None:
        """Let components keep their invariants after an optimizer step (e.g. the logit-scale clamp)."""
        for module in self.modules():
            step = getattr(module, "post_step", None) if module is not self else None
            if callable(step):
                step()

    def logged_scalars(self) -> dict[str, float]:
        """What the training loop logs beside the losses (each objective's, e.g. its logit scale): unprefixed
        with one objective, ``<name>/<scalar>`` with several."""
        if len(self.objectives) == 1:
            return cast(Objective, self.objectives[0]).logged_scalars()
        return {f"{o.name}/{k}": v for o in cast(Sequence[Objective], self.objectives)
                for k, v in o.logged_scalars().items()}

    @torch.no_grad()
    def caption(self, role: str, items: Sequence[Any], *, max_length: int = 32, batch_size: int = 256) -> list[str]:
        """Text for raw items of ``role`` from the pipeline's decoder (eval mode), batch by batch: the role's
        embeddings, or its token states for a decoder that reads them.

        Raises:
            ValueError: the pipeline has no decoder. KeyError: no encoder for ``role``.
        """
        if self.decoder is None:
            raise ValueError("this pipeline has no [decoder] to caption with")
        if role not in self.encoders:
            raise KeyError(f"no encoder for role {role!r}; roles: {', '.join(self.encoders)}")
        encoder, decoder = self.encoder(role), self.decoder
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        was_training = self.training
        self.eval()
        try:
            out: list[str] = []
            for start in range(0, len(items), batch_size):
                inputs = _to(encoder.prepare(items[start : start + batch_size]), device)
                condition = encoder.encode_states(inputs) if decoder.reads_tokens else encoder.encode(inputs)
                out += decoder.decode(condition, max_length=max_length)
            return out
        finally:
            self.train(was_training)

    def embed(self, role: str, items: Sequence[Any], *, batch_size: int = 256) -> Tensor:
        """Embeddings ``[len(items), N]`` of raw items with the encoder of ``role`` (eval mode).

        Raises:
            KeyError: no encoder for ``role`` (the message lists the roles).
        """
        if role not in self.encoders:
            raise KeyError(f"no encoder for role {role!r}; roles: {', '.join(self.encoders)}")
        return self.encoder(role).embed(items, batch_size=batch_size)


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _to(inputs: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
