"""cl-word2vec: word2vec (Mikolov et al., 2013) as contrastive learning.

Components (see ``cl components``): samplers ``word2vec.skip-gram`` and ``word2vec.cbow``, encoders
``word2vec.embedding`` (input vectors + vocabulary) and ``word2vec.context`` (output vectors), the training
loop ``word2vec.sgd`` and evaluators ``word2vec.word-similarity`` and ``word2vec.analogy``. With
``core.dot`` and ``core.negative-sampling`` (or ``core.nce``) they make skip-gram with negative sampling.

After training::

    import cl_word2vec
    vectors = cl_word2vec.load("runs/word2vec-english-...")      # WordVectors, like gensim's KeyedVectors
    vectors.most_similar("france", topn=10)
    cl_word2vec.export("runs/word2vec-english-...", "vectors.bin", binary=True)   # word2vec C format

or ``python -m cl_word2vec export RUN_DIR vectors.bin``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .vectors import WordVectors


def load(run_dir: str | Path, role: str | None = None) -> WordVectors:
    """The input vectors and vocabulary of a finished run (``model.safetensors``), without the corpus.

    Args:
        run_dir: a run directory or saved folder with ``spec.toml`` and ``model.safetensors``, or a Hub
            repository ``org/name[@revision]`` pushed with ``cl push`` (downloaded into the Hub cache).
        role: the ``word2vec.embedding`` encoder role (default: the one the spec names).

    Raises:
        WeightsError: no weights, or no word2vec embedding in them.
        HubError: a Hub repository that cannot be downloaded.
    """
    import tomllib

    from safetensors.numpy import load_file

    from cl_core.api import WeightsError

    from .vectors import WordVectors

    from cl_core.api import names_hub_repository, resolve_source

    if not Path(run_dir).is_dir() and names_hub_repository(run_dir):
        run_dir = resolve_source(str(run_dir))
    run_dir = Path(run_dir)
    weights = run_dir / "model.safetensors"
    if not run_dir.is_dir():
        raise WeightsError(f"{run_dir} does not exist (give a run directory or a saved folder)")
    if not weights.is_file():
        raise WeightsError(f"{run_dir} has no model.safetensors (is it a finished run?)")
    if role is None and (run_dir / "spec.toml").is_file():
        spec = tomllib.loads((run_dir / "spec.toml").read_text(encoding="utf-8"))
        role = next((r for r, t in spec.get("encoders", {}).items() if t.get("type") == "word2vec.embedding"), None)
    tensors = load_file(str(weights))
    roles = [k.split(".")[1] for k in tensors if k.startswith("encoders.") and k.endswith(".vocab_utf8")]
    if role is None and roles:
        role = roles[0]
    if role not in roles:
        raise WeightsError(f"{weights} holds no word2vec.embedding vectors" + (f" for role {role!r}" if role else ""))
    from .vocab import Vocabulary

    vocab = Vocabulary.from_bytes(tensors[f"encoders.{role}.vocab_utf8"], tensors[f"encoders.{role}.counts"])
    return WordVectors(vocab.words, tensors[f"encoders.{role}.weight"], vocab.counts)


def export(run_dir: str | Path, path: str | Path, *, binary: bool = True, role: str | None = None) -> Path:
    """Write a finished run's word vectors in the word2vec C format (gensim's ``load_word2vec_format``
    reads it). Returns ``path``. Raises WeightsError (see :func:`load`)."""
    return load(run_dir, role).save_word2vec_format(path, binary=binary)


__all__ = ["export", "load"]
