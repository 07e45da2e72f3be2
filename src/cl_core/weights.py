"""Weights on disk and on the Hugging Face Hub: a folder with ``spec.toml``, ``model.safetensors`` and
a model card ``README.md``. Loading rebuilds the pipeline from the spec with the installed plugins and
loads the weights strictly; it never unpickles.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .build import build_pipeline
from .checkpoint import atomic_write, atomic_write_text
from .errors import WeightsError
from .pipeline import Pipeline
from .plugins import PluginHost, default_host
from .spec import dump_spec, load_spec

WEIGHTS_NAME = "model.safetensors"
SPEC_NAME = "spec.toml"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def state_tensors(pipeline: Pipeline) -> dict[str, torch.Tensor]:
    """The pipeline's state dict as independent contiguous CPU tensors (safetensors refuses shared storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in pipeline.state_dict().items()}


def save_weights(pipeline: Pipeline, path: Path) -> None:
    """Write ``model.safetensors`` atomically."""
    tensors = state_tensors(pipeline)
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt", "library": "cl"}))


def save_pretrained(
    pipeline: Pipeline, directory: str | Path, *, provenance: Mapping[str, Any] | None = None,
    card: str | None = None,
) -> Path:
    """Write ``spec.toml`` (resolved, with provenance), ``model.safetensors`` and, if given, ``README.md``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / SPEC_NAME, dump_spec(pipeline.spec, provenance))
    save_weights(pipeline, directory / WEIGHTS_NAME)
    if card is not None:
        atomic_write_text(directory / "README.md", card)
    return directory


def load_weights(pipeline: Pipeline, path: Path) -> None:
    """Load ``path`` into ``pipeline`` strictly; raises :class:`WeightsError` listing every mismatch."""
    try:
        saved = load_file(str(path))
    except Exception as exc:
        raise WeightsError(f"cannot read {path}: {exc}") from exc
    expected = pipeline.state_dict()
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    shapes = sorted(
        f"{k} expected {list(expected[k].shape)} got {list(saved[k].shape)}"
        for k in set(expected) & set(saved) if expected[k].shape != saved[k].shape
    )
    if missing or unexpected or shapes:
        lines = [f"{path.name} does not match the pipeline built from {SPEC_NAME}"]
        lines += [f"  missing:    {k}" for k in missing[:20]] + ([f"  ... {len(missing) - 20} more"] if len(missing) > 20 else [])
        lines += [f"  unexpected: {k}" for k in unexpected[:20]]
        lines += [f"  shape:      {s}" for s in shapes[:20]]
        raise WeightsError("\n".join(lines))
    pipeline.load_state_dict(saved, strict=True)


def resolve_source(source: str | Path) -> Path:
    """A local folder, or ``org/name`` / ``org/name@revision`` downloaded from the Hub into its cache."""
    path = Path(source)
    if path.is_dir():
        return path
    text = str(source)
    if text.count("/") != 1 or text.startswith((".", "/")):
        raise WeightsError(f"{text!r} is neither a local folder nor a Hub repository id like 'org/name'")
    repo_id, _, revision = text.partition("@")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return Path(snapshot_download(repo_id, revision=revision or None))
    except HfHubHTTPError as exc:
        raise WeightsError(f"cannot download {text} from the Hub: {exc}") from exc
    except Exception as exc:  # offline mode, network errors
        raise WeightsError(f"cannot download {text} from the Hub: {type(exc).__name__}: {exc}") from exc


def from_pretrained(
    source: str | Path, *, host: PluginHost | None = None, device: str | torch.device = "cpu", with_data: bool = False
) -> Pipeline:
    """Rebuild a pipeline from a saved folder (or Hub id) and load its weights strictly.

    Raises:
        SpecError: the saved spec names components that are not installed (names the distribution).
        WeightsError: no safetensors weights (pickle files are refused), or the weights do not match.
    """
    directory = resolve_source(source)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise WeightsError(
                f"{directory} has only pickle weights ({', '.join(pickles)}); cl never unpickles "
                f"(it can run code). Convert them to {WEIGHTS_NAME} with safetensors."
            )
        raise WeightsError(f"{directory} has no {WEIGHTS_NAME}")
    registry = (host or default_host()).registry()
    spec = load_spec(directory / SPEC_NAME, registry)
    pipeline = build_pipeline(spec, registry, device=device, with_data=with_data)
    load_weights(pipeline, weights)
    return pipeline.to(device).eval()
