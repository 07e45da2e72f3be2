"""``core.from-run``: an encoder role taken from a saved model (a run folder or a Hub id), frozen by default.

The source's ``spec.toml`` names the tower (its registered type and params); the tower is built with this
build's own registry (:func:`cl_core.build.build_nested`) and its weights are read from the source's
``model.safetensors`` (the keys under ``encoders.<role>.``), strictly. The new run registers the tower as
its own submodule, so the tower's weights are saved in the new run's ``model.safetensors``, and the tower's
table is pinned into the new run's ``spec.toml`` (``encoder = { type = ..., ... }``): the saved run is
self-contained and loads without its source.

Frozen (the default) is LiT's locked tower (Zhai et al., 2022, "LiT: Zero-Shot Transfer with Locked-image
text Tuning"): nothing in it trains, it stays in eval mode, and the embeddings of items seen before are
served from memory (:class:`cl_core.frozen.FrozenEncoder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from ..components import Encoder
from ..errors import BuildError, ClError
from ..spec.model import EncoderRef
from .composition_params import FromRunParams


def _source_tower(params: FromRunParams, role: str, ctx: Any) -> tuple[EncoderRef, Path | None]:
    """The saved tower's table and the source folder (None when the pinned table serves and the weights are
    loaded by the caller).

    Raises:
        BuildError: the source is missing or is not a saved model, or has no such role.
    """
    from ..weights import SPEC_NAME, WEIGHTS_NAME, resolve_source
    from ..spec import load_spec

    if params.encoder is not None and (ctx.weights_follow or params.source is None):
        return params.encoder, None
    assert params.source is not None  # FromRunParams requires one of source and encoder
    try:
        folder = resolve_source(params.source)
    except ClError as exc:
        raise BuildError(f"{ctx.path}.source: {exc}") from None
    if not (folder / WEIGHTS_NAME).is_file():
        raise BuildError(f"{ctx.path}.source: {folder} has no {WEIGHTS_NAME} (not a finished run)")
    saved = load_spec(folder / SPEC_NAME, ctx.registry)
    if role not in saved.encoders:
        raise BuildError(f"{ctx.path}.role: {params.source} has no encoder role {role!r}; its roles: "
                         f"{', '.join(saved.encoders) or 'none'}")
    return saved.encoders[role], folder


def _load_tower_weights(tower: Encoder, folder: Path, role: str, path: str) -> None:
    """Load ``encoders.<role>.*`` of ``folder``'s weights into ``tower``, strictly.

    Raises:
        BuildError: unreadable weights, or keys / shapes that do not match the rebuilt tower.
    """
    from safetensors.torch import load_file

    from ..weights import WEIGHTS_NAME

    file = folder / WEIGHTS_NAME
    try:
        saved = load_file(str(file))
    except Exception as exc:
        raise BuildError(f"{path}.source: cannot read {file}: {exc}") from None
    prefix = f"encoders.{role}."
    state = {k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)}
    expected = tower.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise BuildError(f"{path}.source: the weights of role {role!r} in {file} do not fit the tower its spec "
                         f"builds (missing {missing[:5]}, unexpected {unexpected[:5]}, other shapes {shapes[:5]})")
    tower.load_state_dict(state, strict=True)


def build_from_run(params: FromRunParams, ctx: Any) -> Encoder:
    """The saved tower, loaded and (by default) frozen; the table to save is pinned with ``ctx.pin``.

    Raises:
        BuildError: see :func:`_source_tower` and :func:`_load_tower_weights`; a source tower that fails to build
            is reported at this table's path.
    """
    from ..build import build_nested
    from ..frozen import FrozenEncoder

    role = params.role or ctx.role
    if role is None:
        raise BuildError(f"{ctx.path}.role: name the encoder role to take from {params.source}")
    ref, folder = _source_tower(params, role, ctx)
    where = f"{ctx.path}.encoder" if folder is None else f"{ctx.path} ({params.source}: encoders.{role})"
    tower = build_nested(attrs.evolve(ctx, role=role), ref, where, Encoder)
    if folder is not None:
        _load_tower_weights(tower, folder, role, ctx.path)
    ctx.pin(attrs.evolve(params, role=role, encoder=ref))
    return FrozenEncoder(tower, cache=params.cache) if params.freeze else tower
