"""cl-coca: CoCa (Yu et al., 2022, "CoCa: Contrastive Captioners are Image-Text Foundation Models"), one model that
is a contrastive dual encoder and a captioner.

* ``coca.image`` (encoder): a token grid (pretrained EfficientNet-Lite or a ViT) and two attentional poolers;
* ``coca.text`` (encoder): the unimodal text decoder with an appended CLS token, started from a ``cl-lm`` run;
* ``coca.captioner`` (decoder): the multimodal text decoder, cross-attending to the captioning tokens;
* ``coca.attention`` (evaluator): the captioning pooler's attention maps.

Trained with ``core.contrastive`` (the CLIP loss) and ``core.caption`` (weights 1.0 and 2.0, open_clip's defaults).
From Python: :func:`load_towers` and :func:`load_captioner`. Importing this package imports neither torch nor
transformers (the names below load on first use).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_WHERE = {"Captioner": "api", "load_captioner": "api", "load_towers": "api"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
