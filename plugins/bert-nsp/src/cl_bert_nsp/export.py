"""Export a trained :class:`~cl_bert_nsp.embedding.SentenceEncoder` as a sentence-transformers model folder.

The folder is the classic sentence-transformers layout that every version since 2.x reads (the layout of
all-MiniLM-L6-v2 itself): ``modules.json`` (Transformer -> Pooling -> Normalize), ``sentence_bert_config.json``
(``max_seq_length``), ``1_Pooling/config.json`` (the pooling mode), ``config_sentence_transformers.json``
(cosine similarity), the transformer's ``config.json`` and ``model.safetensors``, and the tokenizer files.
``SentenceTransformer(folder)`` then embeds like the encoder did (same tokenizer, truncation, pooling and
normalisation).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cl_core.api import ClError, default_mode

from .embedding import SentenceEncoder

_POOLING_KEYS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
                 "last-token": "pooling_mode_lasttoken"}


def _encoder_of(source: Any, role: str | None) -> SentenceEncoder:
    if isinstance(source, SentenceEncoder):
        return source
    if isinstance(source, (str, Path)):
        from cl_core.api import from_pretrained

        source = from_pretrained(source)
    encoders = getattr(source, "encoders", None)
    if encoders is None:
        raise ClError(f"cannot export {type(source).__name__}: give a SentenceEncoder, a Pipeline or a run folder")
    roles = list(encoders)
    if role is None:
        role = next((r for r in roles if isinstance(encoders[r], SentenceEncoder)), None)
        if role is None:
            raise ClError(f"the pipeline has no bert-nsp.sentence-encoder (roles: {', '.join(roles)})")
    elif role not in encoders:
        raise ClError(f"no encoder for role {role!r}; roles: {', '.join(roles)}")
    encoder = encoders[role]
    if not isinstance(encoder, SentenceEncoder):
        raise ClError(f"role {role!r} is a {type(encoder).__name__}, not a bert-nsp.sentence-encoder")
    return encoder


def _readable_as_written(folder: Path) -> None:
    """Give ``folder`` (from ``mkdtemp``, owner-only) and everything in it the modes of a plain write."""
    os.chmod(folder, default_mode(directory=True))
    for path in folder.rglob("*"):
        os.chmod(path, default_mode(directory=path.is_dir()))


def to_sentence_transformers(source: Any, out_dir: str | Path, *, role: str | None = None,
                             overwrite: bool = False) -> Path:
    """Write a sentence-transformers folder for the sentence encoder of ``source``.

    Args:
        source: a :class:`SentenceEncoder`, a :class:`~cl_core.pipeline.Pipeline`, or a run / saved folder
            (or Hub id) that :func:`cl_core.weights.from_pretrained` loads.
        out_dir: the folder to write (created; written in a temporary sibling, then renamed into place).
        role: which encoder role to export (default: the first ``bert-nsp.sentence-encoder``).
        overwrite: replace an existing ``out_dir``.

    Returns:
        ``out_dir``.

    Raises:
        ClError: no sentence encoder in ``source``, or ``out_dir`` exists and ``overwrite`` is false.
        WeightsError / SpecError / HubError: loading a folder failed (see ``from_pretrained``).
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:  # before loading anything
        raise ClError(f"{out} already exists; pass overwrite=True to replace it")
    encoder = _encoder_of(source, role)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write(encoder, tmp)
        _readable_as_written(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write(encoder: SentenceEncoder, folder: Path) -> None:
    import torch

    model = encoder.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.save_pretrained(str(folder), safe_serialization=True)
    finally:
        model.train(was_training)
    encoder.tokenizer.save_pretrained(str(folder))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if encoder.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    _json(folder / "modules.json", modules)
    _json(folder / "sentence_bert_config.json", {"max_seq_length": encoder.max_length, "do_lower_case": False})
    pooling = {"word_embedding_dimension": encoder.embed_dim, "pooling_mode_cls_token": False,
               "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
               "pooling_mode_lasttoken": False, "include_prompt": True}
    pooling[_POOLING_KEYS[encoder.pooling]] = True
    (folder / "1_Pooling").mkdir()
    _json(folder / "1_Pooling" / "config.json", pooling)
    if encoder.normalize:
        (folder / "2_Normalize").mkdir()
    _json(folder / "config_sentence_transformers.json",
          {"__version__": {"pytorch": torch.__version__}, "prompts": {}, "default_prompt_name": None,
           "similarity_fn_name": "cosine" if encoder.normalize else "dot"})
    (folder / "README.md").write_text(
        "---\nlibrary_name: sentence-transformers\npipeline_tag: sentence-similarity\n---\n\n"
        f"# Sentence encoder exported from cl\n\nBase model: `{encoder.params.model}`; pooling: {encoder.pooling}; "
        f"max_seq_length: {encoder.max_length}; normalised: {encoder.normalize}.\n\n"
        "```python\nfrom sentence_transformers import SentenceTransformer\n"
        "model = SentenceTransformer(\"path/to/this/folder\")\nembeddings = model.encode([\"a sentence\"])\n```\n",
        encoding="utf-8")


def _json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
