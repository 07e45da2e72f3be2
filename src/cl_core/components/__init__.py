"""The component interfaces (these import torch)."""

from .data import Dataset, DataSource
from .decoder import Decoder
from .encoder import CandidateSet, Encoder
from .evaluator import EvalContext, Evaluator, reportable_ks, warn_evaluation
from .loss import Loss
from .objective import EncodedBatch, Objective, PreparedBatch
from .sampler import Sampler
from .scorer import Scorer
from .training import TrainContext, TrainingLoop
from .view import PipelineView

__all__ = ["CandidateSet", "DataSource", "Dataset", "Decoder", "EncodedBatch", "Encoder", "EvalContext", "Evaluator",
           "Loss", "Objective", "PipelineView", "PreparedBatch", "Sampler", "Scorer", "TrainContext", "TrainingLoop", "reportable_ks",
           "warn_evaluation"]
