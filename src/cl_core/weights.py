"""Weights on disk and on the Hugging Face Hub: a folder with ``spec.toml``, ``model.safetensors`` and
a model card ``README.md``. Loading rebuilds the pipeline from the spec with the installed plugins and
loads the weights strictly; it never unpickles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import hub, modelcard
from .build import build_pipeline
from .atomic import atomic_write, atomic_write_text
from .errors import HubError, WeightsError
from .pipeline import Pipeline
from .plugins import PluginHost, default_host
from .spec import dump_spec, load_spec
from .spec.validators import FINISHED_MARKER, is_run_pattern, newest_run

WEIGHTS_NAME = FINISHED_MARKER
SPEC_NAME = "spec.toml"
CARD_NAME = "README.md"
METRICS_FILE = "metrics.jsonl"
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
    """Write ``spec.toml`` (resolved, with provenance), ``model.safetensors`` and a model card ``README.md``.

    Args:
        pipeline: the pipeline to save.
        directory: created if missing.
        provenance: the ``[provenance]`` table of the saved spec (versions, git sha, command).
        card: the model card text; default: a card without results (:func:`cl_core.modelcard.render`).

    Returns:
        The folder, ready for :func:`from_pretrained` and :func:`push_to_hub`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / SPEC_NAME, dump_spec(pipeline.spec, provenance))
    save_weights(pipeline, directory / WEIGHTS_NAME)
    if card is None:
        card = modelcard.render(pipeline.spec, results={}, training={}, provenance=provenance or {},
                               usage=modelcard.usage_notes(pipeline))
    atomic_write_text(directory / CARD_NAME, card)
    return directory


def resize_to_saved(pipeline: Pipeline, saved: Mapping[str, torch.Tensor]) -> None:
    """Let modules whose shapes come from data resize themselves before a strict load.

    A module may define ``resize_to_saved(tensors)``; it receives the saved tensors under its own prefix
    (keys relative to the module) and reallocates parameters and buffers to those shapes. word2vec's tables,
    whose row count is the vocabulary size learned from the corpus, use it so a run loads without its corpus.
    """
    for name, module in pipeline.named_modules():
        resize = getattr(module, "resize_to_saved", None)
        if module is pipeline or not callable(resize):
            continue
        prefix = f"{name}."
        resize({k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)})


def pack_texts(texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts as two tensors a ``model.safetensors`` can hold (it stores tensors only): the UTF-8 bytes one after
    another (``uint8 [total bytes]``) and the ``int64 [M + 1]`` offsets of each text (text i is bytes
    ``offsets[i]:offsets[i + 1]``). Decoders save their caption memories and entity names this way."""
    encoded = [str(t).encode("utf-8") for t in texts]
    offsets = torch.zeros(len(encoded) + 1, dtype=torch.int64)
    if encoded:
        offsets[1:] = torch.tensor([len(b) for b in encoded], dtype=torch.int64).cumsum(0)
    blob = b"".join(encoded)
    data = torch.frombuffer(bytearray(blob), dtype=torch.uint8).clone() if blob else torch.zeros(0, dtype=torch.uint8)
    return data, offsets


def unpack_texts(data: torch.Tensor, offsets: torch.Tensor) -> list[str]:
    """Inverse of :func:`pack_texts`.

    Raises:
        ValueError: offsets that do not fit the bytes, or bytes that are not UTF-8 (damaged weights).
    """
    blob = data.detach().cpu().numpy().tobytes()
    ends = offsets.detach().cpu().tolist()
    if ends and (ends[0] != 0 or ends[-1] != len(blob) or any(b < a for a, b in zip(ends, ends[1:]))):
        raise ValueError(f"text offsets do not fit the {len(blob)} bytes of text (damaged weights)")
    try:
        return [blob[a:b].decode("utf-8") for a, b in zip(ends[:-1], ends[1:])]
    except UnicodeDecodeError as exc:
        raise ValueError(f"the stored texts are not UTF-8 ({exc}; damaged weights)") from None


def load_weights(pipeline: Pipeline, path: Path) -> None:
    """Load ``path`` into ``pipeline`` strictly; raises :class:`WeightsError` listing every mismatch."""
    try:
        saved = load_file(str(path))
    except Exception as exc:
        raise WeightsError(f"cannot read {path}: {exc}") from exc
    resize_to_saved(pipeline, saved)
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


def names_hub_repository(source: str | Path) -> bool:
    """Whether ``source`` is shaped like ``org/name[@revision]`` and not like a local path (``./``, ``/``,
    ``~``): what :func:`resolve_source` would fetch from the Hub when no such folder exists."""
    text = str(source)
    return hub.RepoRef.looks_like(text) and not text.startswith((".", "/", "~"))


def resolve_source(source: str | Path, *, revision: str | None = None, token: str | None = None,
                   endpoint: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """A local folder, the newest finished run matching a glob (``runs/clip-emoji-*``), or ``org/name`` /
    ``org/name@revision`` downloaded from the Hub into its cache.

    A local folder wins over a Hub id of the same spelling. Only ``spec.toml``, ``model.safetensors`` and
    ``README.md`` are downloaded; if the repository has no safetensors weights its file list is read to
    say whether it holds only pickle files.

    Raises:
        WeightsError: neither a folder nor a repository id, a glob that matches no finished run, or no
            safetensors weights in the repository.
        HubError: the download failed (offline and not cached, unreachable, unknown repository or revision).
    """
    path = Path(source)
    if path.is_dir():
        return path
    text = str(source)
    if is_run_pattern(text):
        try:
            return Path(newest_run(text))
        except ValueError as exc:
            raise WeightsError(str(exc)) from exc
    if not names_hub_repository(text):
        raise WeightsError(f"{text!r} is neither a local folder nor a Hub repository id like 'org/name'")
    ref = hub.RepoRef.parse(text)
    if revision is not None:
        ref = hub.RepoRef(ref.repo_id, revision)
    try:
        folder = hub.download(ref, token=token, endpoint_url=endpoint, cache=cache_dir,
                              allow_patterns=[SPEC_NAME, WEIGHTS_NAME, CARD_NAME])
    except HubError as exc:
        if Path(ref.repo_id).parent.is_dir():  # "runs/typo": most likely a local folder that is not there
            raise HubError(f"{exc}\n  (and there is no local folder {path})") from exc
        raise
    if not (folder / WEIGHTS_NAME).is_file() and not hub.offline():
        pickles = [f for f in hub.list_files(ref, token=token, endpoint_url=endpoint) if f.endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise WeightsError(f"{ref} has only pickle weights ({', '.join(pickles)}); cl never unpickles "
                               f"(it can run code). Convert them to {WEIGHTS_NAME} with safetensors.")
    return folder


def from_pretrained(
    source: str | Path, *, host: PluginHost | None = None, device: str | torch.device = "cpu", with_data: bool = False,
    revision: str | None = None, token: str | None = None, endpoint: str | None = None,
    cache_dir: str | Path | None = None,
) -> Pipeline:
    """Rebuild a pipeline from a saved folder or a Hub repository and load its weights strictly.

    Args:
        source: a folder, ``org/name`` or ``org/name@revision`` (branch, tag or commit id).
        host: the plugin host whose registry builds the pipeline (default: the installed plugins).
        device: where the returned pipeline lives.
        with_data: also build the dataset the spec names (needed to evaluate, not to embed).
        revision: overrides the ``@revision`` of ``source``.
        token: Hub token for private repositories (default: ``HF_TOKEN`` or the saved login).
        endpoint: the Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co).
        cache_dir: the download cache (default: ``HF_HUB_CACHE`` or ``$HF_HOME/hub``).

    Raises:
        SpecError: the saved spec names components that are not installed (names the distribution).
        WeightsError: no safetensors weights (pickle files are refused), or the weights do not match.
        HubError: the download failed.

    Example::

        pipeline = from_pretrained("my-org/clip-emoji@v1")
        text_emb = pipeline.embed("text", ["an emoji of a dog face"])
    """
    directory = resolve_source(source, revision=revision, token=token, endpoint=endpoint, cache_dir=cache_dir)
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
    pipeline = build_pipeline(spec, registry, device=device, with_data=with_data, source=str(directory / SPEC_NAME),
                              weights_follow=True)
    load_weights(pipeline, weights)
    return pipeline.to(device).eval()


def hub_files(directory: str | Path) -> dict[str, Path]:
    """The files of a saved folder or run directory that go to the Hub: spec, weights, card, metrics, plots.

    The resumable ``checkpoint.safetensors`` (optimizer state) stays local.

    Raises:
        WeightsError: ``spec.toml`` or ``model.safetensors`` is missing (not a finished run).
    """
    directory = Path(directory)
    for required in (SPEC_NAME, WEIGHTS_NAME):
        if not (directory / required).is_file():
            raise WeightsError(f"{directory} has no {required}: push a finished run or a save_pretrained folder")
    names = [SPEC_NAME, WEIGHTS_NAME, CARD_NAME, METRICS_FILE]
    files = {name: directory / name for name in names if (directory / name).is_file()}
    plots = directory / "plots"
    if plots.is_dir():
        files.update({f"plots/{p.name}": p for p in sorted(plots.glob("*.png"))})
    return files


def push_to_hub(directory: str | Path, repo_id: str, *, revision: str | None = None, private: bool = False,
                token: str | None = None, endpoint: str | None = None, message: str | None = None) -> str:
    """Upload a saved folder (or run directory) to the Hub in one commit; returns the commit URL.

    Uploads :func:`hub_files`; the model card's loading example is pointed at ``repo_id``. The repository
    is created if needed (``private`` applies only then) and so is the branch ``revision``.

    Args:
        directory: a run directory or a :func:`save_pretrained` folder.
        repo_id: ``org/name``.
        revision: branch to commit to (default ``main``); created from ``main`` if missing.
        private: create the repository private.
        token: a token with write access (default: ``HF_TOKEN`` or the saved login).
        endpoint: the Hub URL (default: ``HF_ENDPOINT`` or https://huggingface.co).
        message: the commit message.

    Raises:
        WeightsError: the folder has no spec or no safetensors weights.
        HubError: offline, unreachable, refused credentials, or another Hub error.
    """
    ref = hub.RepoRef.parse(repo_id)
    if ref.revision and revision:
        raise HubError(f"give the revision once: {repo_id!r} and revision={revision!r}")
    ref = hub.RepoRef(ref.repo_id, revision or ref.revision)
    local = hub_files(directory)
    files: dict[str, bytes | Path] = dict(local)
    if CARD_NAME in local:
        card = local[CARD_NAME].read_text(encoding="utf-8")
        files[CARD_NAME] = modelcard.with_source(card, str(ref)).encode("utf-8")
    pushed = hub.upload(files, ref, private=private, token=token, endpoint_url=endpoint,
                        message=message or f"Upload {Path(directory).name} with cl")
    return pushed.url
