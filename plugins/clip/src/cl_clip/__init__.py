"""cl-clip: CLIP (Radford et al., 2021) for cl.

Image towers ``clip.vit``, ``clip.resnet``, ``clip.efficientnet``; text towers
``clip.text-transformer``, ``clip.minilm``; evaluators ``clip.zero-shot`` and ``clip.retrieval``.
Importing this package imports no torch; the component modules do.
"""

__version__ = "0.1.0"
