"""The component interfaces (these import torch)."""

from .data import Dataset, DataSource
from .decoder import Decoder
from .encoder import Encoder
from .evaluator import EvalContext, Evaluator
from .loss import Loss
from .sampler import Sampler
from .scorer import Scorer

__all__ = ["DataSource", "Dataset", "Decoder", "Encoder", "EvalContext", "Evaluator", "Loss", "Sampler", "Scorer"]
