"""Tiny models for tests of the text-embedding components (offline, CPU, a second to build)."""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def make_tiny_bert(folder: str | Path, *, hidden: int = 32, layers: int = 2, heads: int = 2,
                   vocab_size: int | None = None, max_position: int = 128, seed: int = 0,
                   tokenizer: bool = True) -> Path:
    """Write a randomly initialised BERT (``hidden`` wide, ``layers`` deep) as ``config.json`` +
    ``model.safetensors`` into ``folder``, with all-MiniLM-L6-v2's uncased WordPiece tokenizer files.

    ``vocab_size`` defaults to the tokenizer's 30,522 (give a smaller one to make a mismatched pair).
    """
    import torch
    from transformers import BertConfig, BertModel

    from cl_core.api import hf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size or 30522, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=max_position)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(folder), safe_serialization=True)
    if tokenizer:
        source = hf.minilm_dir()
        for name in TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copy(source / name, folder / name)
    return folder
