"""cl-decap: DeCap (Li et al., ICLR 2023, "DeCap: Decoding CLIP Latents for Zero-Shot Captioning via Text-Only
Training") for cl, with ViECap's entity-aware hard prompts (Fei et al., ICCV 2023) as an option.

* ``decap.decap`` (decoder, :mod:`cl_decap.decoder`): trained on text only by ``core.caption`` (condition and target
  the caption's text role); decodes image embeddings projected onto a memory of text embeddings
  (:mod:`cl_decap.memory`) that is saved with the model;
* :func:`load_decoder`: the decoder of a saved run, optionally checked against (and bound to) another pipeline's
  towers (:mod:`cl_decap.space`).

Importing this package imports neither torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .decoder import DeCap


def load_decoder(source: str | Path, *, pipeline: Any = None, host: Any = None, device: str = "cpu") -> DeCap:
    """The ``decap.decap`` decoder of a saved run folder or Hub repository (``from_pretrained``), in eval mode.

    Args:
        source: a run directory, a saved folder, or ``org/name[@revision]``.
        pipeline: another pipeline whose towers will embed what is decoded: its text and image towers are checked
            against the digests the decoder recorded, and the decoder is bound to them (a later ``load_state_dict``
            checks them again).
        host: the plugin host (default: the installed plugins).
        device: where the decoder lives.

    Raises:
        WeightsError: the run holds no DeCap decoder, its weights do not load, or ``pipeline``'s towers are not the
            ones the decoder was trained with.
    """
    from cl_core.api import WeightsError, from_pretrained

    from .decoder import DeCap

    decoder = from_pretrained(source, host=host, device=device).decoder
    if not isinstance(decoder, DeCap):
        found = "no [decoder]" if decoder is None else f"a {type(decoder).__name__} decoder"
        raise WeightsError(f"{source} holds {found}, not a decap.decap decoder")
    if pipeline is not None:
        decoder.bind(pipeline)
    return decoder.eval()


__all__ = ["load_decoder"]
