"""Atomic, pickle-free checkpoints: one safetensors file holding model, optimizer, scheduler and RNG
state, with the non-tensor state as JSON in the file's metadata.

Files are written to a temporary file in the same folder, fsynced, then renamed over the target, so a
run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .atomic import atomic_write
from .errors import CheckpointError, indented_list

STATE_KEY = "cl_state"


def _flatten_optimizer(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        plain_state[str(index)] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain_state[str(index)][name] = value
    return tensors, {"state": plain_state, "param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    progress: Mapping[str, Any],
) -> None:
    """Write a resumable checkpoint atomically (``progress``: step, epoch, batch position, history)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    state = {
        "progress": dict(progress),
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    }
    # Shared storage (tied weights) cannot be saved twice by safetensors: clone makes each independent.
    tensors = {k: v.clone() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={STATE_KEY: json.dumps(state)}))


def read_metadata(path: Path) -> dict[str, str]:
    """The string metadata of the safetensors file ``path``, read from its header without loading a tensor.

    Opening checks that the header is whole and that the tensors it lists fit in the file, so a truncated
    file is caught here, cheaply, before a run builds its data.

    Raises:
        CheckpointError: ``path`` does not exist, or is not a readable safetensors file (truncated, corrupt).
    """
    from safetensors import safe_open

    if not Path(path).is_file():
        raise CheckpointError(f"no checkpoint to resume from: {path} does not exist (the run stopped before its "
                              "first checkpoint; start it again with `cl train`)")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # SafetensorError, OSError: the file is damaged, say so without a traceback
        raise CheckpointError(f"cannot read {path}: {exc} (a damaged checkpoint cannot be resumed)") from exc


def read_state(path: Path) -> dict[str, Any]:
    """The non-tensor state :func:`save_checkpoint` wrote (``progress``, optimizer, scheduler, scaler).

    Raises:
        CheckpointError: missing or unreadable file, or not a checkpoint written by :func:`save_checkpoint`.
    """
    meta = read_metadata(path)
    if STATE_KEY not in meta:
        raise CheckpointError(f"{path} is not a cl checkpoint (no '{STATE_KEY}' metadata)")
    try:
        return json.loads(meta[STATE_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"cannot read {path}: its '{STATE_KEY}' metadata is not JSON ({exc})") from exc


def model_mismatches(model: torch.nn.Module, saved: Mapping[str, torch.Tensor]) -> list[str]:
    """One line per tensor where ``saved`` (model state, keys without the ``model.`` prefix) and ``model``
    disagree: missing, unexpected, or of another shape. Empty when ``model`` can load ``saved`` strictly."""
    expected = model.state_dict()
    lines = [f"missing:    {k}" for k in sorted(set(expected) - set(saved))]
    lines += [f"unexpected: {k}" for k in sorted(set(saved) - set(expected))]
    lines += [f"shape:      {k}: checkpoint {list(saved[k].shape)}, pipeline {list(expected[k].shape)}"
              for k in sorted(set(expected) & set(saved)) if saved[k].shape != expected[k].shape]
    return lines


def _incompatible(path: Path, what: str, details: str) -> CheckpointError:
    return CheckpointError(
        f"{path} does not fit the pipeline the spec builds ({what}): the change to the spec (or to its plugins) "
        f"is incompatible with the checkpoint; resume without it, or start a new run with it\n{details}")


def load_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
) -> dict[str, Any]:
    """Restore everything :func:`save_checkpoint` wrote; returns the ``progress`` mapping.

    Nothing is loaded unless every model tensor matches by name and shape.

    Raises:
        CheckpointError: the file is missing, unreadable or not a cl checkpoint; or the pipeline (built from a
            changed spec) has other tensors, shapes or trainable parameters than the checkpoint.
    """
    state = read_state(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # damaged after the header (read_state checked that much)
        raise CheckpointError(f"cannot read {path}: {exc} (a damaged checkpoint cannot be resumed)") from exc
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    mismatches = model_mismatches(model, model_state)
    if mismatches:
        n = len(mismatches)
        raise _incompatible(path, f"{n} model tensor{'s' if n != 1 else ''} differ{'s' if n == 1 else ''}",
                            indented_list(mismatches, limit=5))
    model.load_state_dict(model_state, strict=True)
    try:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    except ValueError as exc:  # torch: parameter groups of other sizes (a tower frozen or unfrozen)
        raise _incompatible(path, "the trainable parameters differ", f"  {exc}") from exc
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        cuda_states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if cuda_states:
            torch.cuda.set_rng_state_all(cuda_states)
    return state["progress"]
