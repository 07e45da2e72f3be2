"""cl-capdec: prefix captioners over a frozen contrastive tower.

* ``capdec.clipcap`` (decoder): ClipCap (Mokady et al., 2021) — an MLP mapper (LM fine-tuned) or a transformer
  mapper (LM frozen) from an image embedding to K prefix embeddings of a ``cl-lm`` language model;
* ``capdec.capdec`` (decoder): CapDec (Nukrai et al., 2022) — the same decoder trained on text only, with noise
  injection, decoding image embeddings, with the optional modality offset and (ViECap) entity prompts;
* ``capdec.emoji-text`` (dataset): the emoji concepts as caption text, with the held-out image splits.

Both decoders train through the core's ``core.caption`` objective on a tower taken with ``core.from-run``.
Importing this package imports neither torch nor transformers.
"""

__version__ = "0.1.0"
