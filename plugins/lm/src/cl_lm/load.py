"""Taking a trained LM out of a run: :func:`load_lm` (for other plugins: ClipCap, CapDec, DeCap and CoCa start
their language model from one) and :func:`export` (a ``transformers`` folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cl_core.api import WeightsError, from_pretrained

from .model import GPT2Decoder


def load_lm(source: str | Path, *, freeze: bool = False, trainable_layers: int | None = None, host: Any = None,
            device: str = "cpu") -> GPT2Decoder:
    """The ``lm.gpt2`` decoder of a saved run folder or Hub repository, weights and tokenizer loaded strictly
    (``from_pretrained``; offline when the folder is local).

    Args:
        source: a run directory (``runs/lm-english-...``), a saved folder, or ``org/name[@revision]``.
        freeze: lock every weight (eval mode kept, no gradients): an LM used as it is.
        trainable_layers: lock all but the top k blocks (``cl_core.hf.locked_parts``); None leaves the run's
            setting (fine-tune everything unless the run locked some).
        host: the plugin host (default: the installed plugins).
        device: where the LM lives.

    Returns:
        The :class:`~cl_lm.model.GPT2Decoder` (an ``nn.Module``: register it in your own module to train and
        save it with yours); in eval mode, like ``from_pretrained``'s pipelines.

    Raises:
        WeightsError: the run has no ``lm.gpt2`` decoder, or its weights do not load.
        HubError: a Hub repository that cannot be downloaded.
        SpecError: the run's spec needs plugins that are not installed.
    """
    pipeline = from_pretrained(source, host=host, device=device)
    lm = pipeline.decoder
    if not isinstance(lm, GPT2Decoder):
        found = "no [decoder]" if lm is None else f"a {type(lm).__name__} decoder"
        raise WeightsError(f"{source} holds {found}, not an lm.gpt2 language model")
    if freeze:
        lm.set_trainable(0)
    elif trainable_layers is not None:
        lm.set_trainable(trainable_layers)
    return lm.eval()


def export(source: str | Path, folder: str | Path) -> Path:
    """Write the LM of a run as a ``transformers`` folder: ``config.json``, ``model.safetensors``,
    ``generation_config.json``, ``tokenizer.json`` and ``tokenizer_config.json``, which
    ``GPT2LMHeadModel.from_pretrained(folder)`` and ``AutoTokenizer.from_pretrained(folder)`` read. Returns
    ``folder``.

    Raises:
        WeightsError: see :func:`load_lm`; ``folder`` exists and is not empty.
    """
    out = Path(folder)
    if out.exists() and any(out.iterdir()):
        raise WeightsError(f"{out} exists and is not empty; give a new folder")
    lm = load_lm(source)
    out.mkdir(parents=True, exist_ok=True)
    lm.model.save_pretrained(str(out), safe_serialization=True)
    lm.tokenizer.save_pretrained(out)
    return out
