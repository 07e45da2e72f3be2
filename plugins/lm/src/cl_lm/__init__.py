"""cl-lm: the shared text-generation stack of cl.

* ``lm.gpt2`` (decoder): a small GPT-2-style causal LM (``transformers``) with its tokenizer (a byte-level BPE
  trained on the data, bytes, or MiniLM's WordPiece), saved inside the run's weights;
* ``lm.next-token`` (objective): its causal LM loss on a batch role's texts, so the core's trainer pretrains it;
* ``lm.perplexity`` (evaluator): held-out perplexity per token and bits per byte;
* ``lm.text`` (dataset): raw English text (the ``cl-datasets`` corpora and the emoji captions) with held-out
  documents;
* :mod:`cl_lm.generate`: batched greedy, beam and top-k / top-p decoding with stop strings, a KV cache and a
  prefix of input embeddings.

Other plugins take a trained LM with :func:`load_lm`::

    import cl_lm
    lm = cl_lm.load_lm("runs/lm-english-20261202-190000")      # or "org/name@v1"; an lm.gpt2 GPT2Decoder
    lm.generate(prompts=["a smiling"], max_new_tokens=8).texts
    lm.generate(prefix=prefix_embeddings, method="beam", beam_size=3).texts    # prefix [B, K, lm.width]

Importing this package imports neither torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .model import GPT2Decoder


def load_lm(source: str | Path, *, freeze: bool = False, trainable_layers: int | None = None, host: Any = None,
            device: str = "cpu") -> GPT2Decoder:
    """The ``lm.gpt2`` decoder of a saved run, with its weights and tokenizer (see :func:`cl_lm.load.load_lm`)."""
    from .load import load_lm as load

    return load(source, freeze=freeze, trainable_layers=trainable_layers, host=host, device=device)


def export(source: str | Path, folder: str | Path) -> Path:
    """Write a run's LM as a ``transformers`` folder (see :func:`cl_lm.load.export`)."""
    from .load import export as write

    return write(source, folder)


__all__ = ["export", "load_lm"]
