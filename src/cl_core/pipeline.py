"""Pipeline: the assembled components of one spec, as one ``nn.Module`` with one state dict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from .components import Dataset, Decoder, Encoder, Evaluator, Loss, Sampler, Scorer
from .spec import PipelineSpec
from .types import Batch, LossOutput, Targets


class Pipeline(nn.Module):
    """Encoders, scorer, loss and optional decoder (modules, saved in ``model.safetensors`` with keys
    ``encoders.<role>.*``, ``scorer.*``, ``loss.*``, ``decoder.*``), plus the dataset, sampler and
    evaluators the spec names (not modules, not saved).

    The first encoder role in the spec is the query side, the second the candidate side; row ``i`` of
    both sides of a batch is a positive pair. With a single encoder both sides share it.
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

    def prepare(self, batch: Batch) -> dict[str, dict[str, Tensor]]:
        """Run each encoder's ``prepare`` on its raw items (CPU work of the data path)."""
        q_role, k_role = self.roles
        roles = dict.fromkeys([q_role, k_role])
        return {role: self.encoder(role).prepare(batch.inputs[role]) for role in roles}

    def training_loss(
        self, prepared: Mapping[str, Mapping[str, Tensor]], labels: Tensor | None, device: torch.device
    ) -> LossOutput:
        """Encode both sides of a prepared batch and compute the loss."""
        q_role, k_role = self.roles
        queries = self.encoder(q_role).encode(_to(prepared[q_role], device))
        candidates = self.encoder(k_role).encode(_to(prepared[k_role], device))
        positive = torch.arange(queries.shape[0], device=device)
        targets = Targets(positive=positive, labels=labels.to(device) if labels is not None else None)
        return self.loss.compute(queries, candidates, self.scorer, targets)

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


def _to(inputs: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
