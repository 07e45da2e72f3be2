"""cl-iterative-decoder: training-free caption decoders that steer a language model with a contrastive model.

* ``iterative.magic`` (:class:`~cl_iterative_decoder.decoder.MagicDecoder`): MAGIC's magic search (Su et al.,
  2022), with :func:`~cl_iterative_decoder.magic.magic_search` for use outside a pipeline;
* ``iterative.zerocap`` (:class:`~cl_iterative_decoder.decoder.ZeroCapDecoder`): ZeroCap (Tewel et al., 2022),
  with :func:`~cl_iterative_decoder.zerocap.zerocap_search`.

Any contrastive run whose text tower shares the query's space serves: a CLIP run's images, an ImageBind run's
audio and line art. Importing this package imports neither torch nor transformers (the names below load on first
use), so ``cl spec validate`` and ``cl components`` stay light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: public name -> the module that defines it
_WHERE = {"MagicSettings": "settings", "magic_search": "magic", "TextSimilarity": "similarity",
          "ZeroCapSettings": "settings", "zerocap_search": "zerocap", "zerocap_hypotheses": "zerocap"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
