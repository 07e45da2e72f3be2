"""cl-captions: caption metrics (``captions.metrics``) and the CLIPRe retrieval baseline (``captions.clipre``).

Importing this package imports nothing heavy; the components load when a spec uses them.
"""

__version__ = "0.1.0"
