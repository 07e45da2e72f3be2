"""The public API of cl, for plugin authors and users: one module, torch-free to import.

A plugin imports everything it needs from here (never from a ``_private`` core module)::

    from cl_core.api import ComponentInfo, Encoder, BuildError, hookimpl

Registration modules stay instant and torch-free: the names that need torch (the component interfaces,
records holding tensors, the contract kit, the frozen-tower and Hugging Face services, ``from_pretrained``)
are imported on first use (PEP 562), so ``from cl_core.api import hookimpl, ComponentInfo`` imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .cache import cache_dir
from .errors import (
    BuildError,
    CheckpointError,
    ClError,
    ClWarning,
    DataError,
    EvaluationWarning,
    HubError,
    PluginError,
    PluginLoadError,
    PluginLoadWarning,
    Problem,
    SpecError,
    TrainingDivergedError,
    WeightsError,
    did_you_mean,
    indented_list,
)
from .hookspecs import hookimpl
from .registry import ComponentInfo
from .spec import dump_spec, load_spec, loads_spec, parse_overrides
from .spec.model import ComponentRef, DecoderRef, EncoderRef, LossRef, ObjectiveRef, PipelineSpec, ScorerRef
from .spec.validators import could_be_hub_id, existing_path, existing_paths, folder_or_hub_id, subset_of, templates

#: name -> module of the names imported on first use (they import torch, pytest or transformers).
_LAZY = {
    **dict.fromkeys(["CandidateSet", "DataSource", "Dataset", "Decoder", "EncodedBatch", "Encoder", "EvalContext",
                     "Evaluator", "Loss", "Objective", "PipelineView", "PreparedBatch", "Sampler", "Scorer",
                     "TrainContext",
                     "TrainingLoop", "reportable_ks", "warn_evaluation"], "cl_core.components"),
    **dict.fromkeys(["Batch", "EncoderOutput", "LossOutput", "Targets"], "cl_core.types"),
    **dict.fromkeys(["BuildContext", "build_nested", "spec_problem"], "cl_core.build"),
    **dict.fromkeys(["Pipeline"], "cl_core.pipeline"),
    **dict.fromkeys(["DEFAULT_CACHE_SIZE", "FeatureCache", "FrozenEncoder", "FrozenParts", "digest_keys", "freeze",
                     "item_digest", "item_keys"], "cl_core.frozen"),
    **dict.fromkeys(["from_pretrained", "names_hub_repository", "push_to_hub", "resolve_source", "save_pretrained",
                     "state_tensors", "WEIGHTS_NAME", "pack_texts", "unpack_texts"], "cl_core.weights"),
    **dict.fromkeys(["FeatureStore", "module_digest", "store_root"], "cl_core.feature_store"),
    **dict.fromkeys(["atomic_write", "atomic_write_text", "default_mode"], "cl_core.atomic"),
    **dict.fromkeys(["NoiseTargets"], "cl_core._builtin.nce"),
    **dict.fromkeys(["build"], "cl_core.standalone"),
    **dict.fromkeys(["train", "evaluate_run"], "cl_core.runs"),
    **dict.fromkeys(["PluginHost", "default_host"], "cl_core.plugins"),
    **dict.fromkeys(["read_items", "tower_digest"], "cl_core.captioning"),
    **dict.fromkeys(["world"], "cl_core.distributed"),
    **dict.fromkeys(["ComponentContract", "DatasetContract", "DecoderContract", "EncoderContract",
                     "EvaluatorContract", "LossContract", "ObjectiveContract", "SamplerContract",
                     "ScorerContract"], "cl_core.testing"),
}

__all__ = sorted([
    "BuildError", "CheckpointError", "ClError", "ClWarning", "ComponentInfo", "ComponentRef", "DataError",
    "DecoderRef", "EncoderRef", "EvaluationWarning", "HubError", "LossRef", "ObjectiveRef", "PipelineSpec",
    "PluginError", "PluginLoadError", "PluginLoadWarning", "Problem", "ScorerRef", "SpecError",
    "TrainingDivergedError", "WeightsError", "cache_dir", "could_be_hub_id", "did_you_mean", "existing_path",
    "existing_paths", "folder_or_hub_id", "subset_of", "templates", "hookimpl", "indented_list", "hf", "toy", "dump_spec", "load_spec",
    "loads_spec", "parse_overrides", *_LAZY,
])


#: submodules offered whole: ``from cl_core.api import hf`` (the Hugging Face adapter; needs ``cl-core[hf]``) and
#: ``toy`` (the in-process toy plugin of :mod:`cl_core.testing`, for examples and tests).
_MODULES = {"hf": "cl_core.hf", "toy": "cl_core.testing.toy"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cl_core.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # the lazy names, for type checkers and IDEs
    from .build import BuildContext, build_nested, spec_problem
    from .components import (
        CandidateSet,
        Dataset,
        DataSource,
        Decoder,
        EncodedBatch,
        Encoder,
        EvalContext,
        Evaluator,
        Loss,
        Objective,
        PreparedBatch,
        Sampler,
        Scorer,
        TrainContext,
        TrainingLoop,
        reportable_ks,
        warn_evaluation,
    )
    from . import hf
    from .testing import toy
    from ._builtin.nce import NoiseTargets
    from .atomic import atomic_write, atomic_write_text, default_mode
    from .components import PipelineView
    from .frozen import DEFAULT_CACHE_SIZE, FeatureCache, FrozenEncoder, FrozenParts, digest_keys, freeze, item_digest, item_keys
    from .pipeline import Pipeline
    from .plugins import PluginHost, default_host
    from .runs import evaluate_run, train
    from .standalone import build
    from .testing import (
        ComponentContract,
        DatasetContract,
        DecoderContract,
        EncoderContract,
        EvaluatorContract,
        LossContract,
        ObjectiveContract,
        SamplerContract,
        ScorerContract,
    )
    from .types import Batch, EncoderOutput, LossOutput, Targets
    from .weights import (
        WEIGHTS_NAME,
        from_pretrained,
        names_hub_repository,
        pack_texts,
        push_to_hub,
        resolve_source,
        save_pretrained,
        state_tensors,
        unpack_texts,
    )
