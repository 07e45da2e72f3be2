"""Worker processes for the data path (``trainer.data_processes``): the pipeline's ``prepare`` (decoding, resizing
and tokenising each role's raw items, and each objective's own inputs) on the next batches in N spawned processes,
as PyTorch's ``DataLoader`` runs its ``num_workers``. The trainer's prefetch keeps the sampler's order, so the
batches are the same tensors, in the same order, as those prepared in the training process.

Each worker holds a copy of the pipeline's data path, taken when training starts: its encoders, decoder and
objectives, on the CPU, without the dataset, the sampler, the evaluators or any cached feature. ``prepare`` is a
function of the configuration (a tokenizer, an image size), never of weights that train, so the copy stays right.

A frozen tower's feature cache lives in the training process. A worker prepares every row in full (claims are
off there: :func:`cl_core.frozen.disable_claims`) and the training process still serves the rows it has cached,
by key, instead of running the trunk. Threads (``trainer.data_workers``) can leave a cached row's image
undecoded, so they are the better choice for a frozen, cached trunk on few cores; processes pay where decoding
and tokenising outgrow what one process's threads do beside the training loop (a GPU, a trunk that trains).
"""

from __future__ import annotations

import io
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import torch

from . import frozen
from .errors import ClError

if TYPE_CHECKING:
    from .pipeline import Pipeline, PreparedBatch
    from .types import Batch

#: the data-path copy of the pipeline in a worker process (set by :func:`_start`)
_worker_pipeline: Any = None


def data_path_payload(pipeline: Pipeline) -> bytes:
    """The pipeline's data path (encoders, decoder, objectives) serialised for worker processes: tensors on the
    CPU (``torch.save``), feature caches empty.

    Raises:
        ClError: a part of the data path cannot be pickled (a lambda, an open file); the message names it.
    """
    from .pipeline import Pipeline

    copy = Pipeline(spec=pipeline.spec, dataset=None, sampler=None, encoders=dict(pipeline.encoders),
                    decoder=pipeline.decoder, objectives=list(pipeline.objectives))
    buffer = io.BytesIO()
    try:
        with frozen.pickled_empty():
            torch.save(copy, buffer)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise ClError(f"trainer.data_processes: the pipeline's data path cannot be copied into worker processes "
                      f"({type(exc).__name__}: {exc}); prepare in threads instead (trainer.data_processes = 0, "
                      "trainer.data_workers = N)") from None
    return buffer.getvalue()


def _start(payload: bytes) -> None:
    global _worker_pipeline
    torch.set_num_threads(1)  # as DataLoader's workers: the cores belong to the processes, not to one's threads
    frozen.disable_claims()
    _worker_pipeline = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)


def prepare_in_worker(batch: Batch) -> PreparedBatch:
    """``Pipeline.prepare`` of ``batch`` on the worker's copy (submitted to the pool of :func:`start_workers`)."""
    return _worker_pipeline.prepare(batch)


def start_workers(payload: bytes, processes: int) -> ProcessPoolExecutor:
    """``processes`` spawned workers, each loading the data path ``payload`` (:func:`data_path_payload`); submit
    :func:`prepare_in_worker` to it. Shut it down when training ends."""
    return ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start, initargs=(payload,))
