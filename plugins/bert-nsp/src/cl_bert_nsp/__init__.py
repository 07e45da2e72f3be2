"""cl-bert-nsp: BERT next-sentence prediction as a binary contrastive task, and text embeddings.

Components are registered in :mod:`cl_bert_nsp.plugin`; importing this package imports neither torch
nor transformers.
"""

__version__ = "0.1.0"
