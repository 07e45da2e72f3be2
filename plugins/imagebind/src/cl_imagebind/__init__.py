"""cl-imagebind: ImageBind (Girdhar et al., 2023, "ImageBind: One Embedding Space To Bind Them All") in cl.

New modalities (speech, line art) are bound to a *frozen* image-text space with (image, X) pairs only; their
alignment with text and with each other is emergent. Importing this package imports neither torch nor numpy.
"""

__version__ = "0.1.0"
