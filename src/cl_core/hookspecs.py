"""Hook specifications: one registration hook per component kind (plural nouns).

Each hook returns an iterable of :class:`cl_core.registry.ComponentInfo` whose names start with the
plugin's entry-point name. Torch is never imported here.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from .registry import ComponentInfo

PROJECT = "cl_core"
hookspec = pluggy.HookspecMarker(PROJECT)
#: The marker of a plugin's registration functions (``@hookimpl def cl_encoders(): ...``); defined here, next
#: to the specifications, so that registering components imports nothing of the plugin host.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def cl_datasets() -> Iterable[ComponentInfo]:
    """Contribute data sources (``[data]`` in a spec).

    Example::

        @hookimpl
        def cl_datasets():
            yield ComponentInfo(name="datasets.emoji", params=EmojiParams,
                                factory="cl_datasets.emoji:build_emoji", summary="Emoji image-text pairs.")
    """


@hookspec
def cl_samplers() -> Iterable[ComponentInfo]:
    """Contribute samplers (``[sampler]``): they turn a data source into training batches."""


@hookspec
def cl_encoders() -> Iterable[ComponentInfo]:
    """Contribute encoders (``[encoders.<role>]``): one modality's inputs to ``[B, N]`` embeddings."""


@hookspec
def cl_scorers() -> Iterable[ComponentInfo]:
    """Contribute scorers (``[scorer]``): ``S(q [Q,N], k [C,N]) -> [Q,C]``; energy is ``-S``."""


@hookspec
def cl_losses() -> Iterable[ComponentInfo]:
    """Contribute losses (``[loss]``): scores and targets to a scalar plus named parts."""


@hookspec
def cl_decoders() -> Iterable[ComponentInfo]:
    """Contribute decoders (``[decoder]``): embeddings back to text."""


@hookspec
def cl_objectives() -> Iterable[ComponentInfo]:
    """Contribute objectives (``[[objective]]``): weighted training terms over named roles of a batch
    (``core.contrastive``, ``core.caption``, a masked-LM beside next-sentence prediction)."""


@hookspec
def cl_evaluators() -> Iterable[ComponentInfo]:
    """Contribute evaluators (``[[evaluate]]``): metrics computed from a trained pipeline."""


@hookspec
def cl_trainers() -> Iterable[ComponentInfo]:
    """Contribute training loops (``[trainer]``; ``type`` defaults to ``core.adamw``).

    A factory ``build(params, ctx: TrainContext) -> TrainingLoop`` owns optimisation, checkpoints and
    metrics of a run (e.g. word2vec's Hogwild SGD instead of the default AdamW loop).
    """
