"""TensorBoard event files next to ``metrics.jsonl``: an optional mirror of a run's scalars.

When the ``tensorboard`` package is installed (the ``tensorboard`` extra: ``pip install cl-core[tensorboard]``),
every record a training loop appends to ``metrics.jsonl`` is also written, as TensorBoard scalars, into
``<run>/tensorboard/`` (``tensorboard --logdir runs/`` then shows every run). Without the package nothing is
written and nothing is said: the event files are a convenience, ``metrics.jsonl`` stays the record of the run.

What is logged: each numeric value of a record, at the record's ``step`` (the optimizer step), tagged with its
key; nested tables join their keys with ``/``, so a training record gives ``loss``, ``lr``, ``logit_scale``, ...
and an evaluation record ``{"eval": {"retrieval/i2t@1": ...}}`` gives ``eval/retrieval/i2t@1``. ``step`` is the
step, not a scalar, and ``epoch`` is not logged either: it is a position, not a measurement, and training and
evaluation records at one step would log it twice. Values are stored as float32 (TensorBoard's scalar type).

Resumed runs: the loop drops the ``metrics.jsonl`` lines logged after the checkpoint it resumes from, and the
writer it opens then starts its file with a ``SessionLog.START`` event at the next step, which tells TensorBoard
to discard the scalars of the steps trained again (``purge_step`` of ``torch.utils.tensorboard.SummaryWriter``):
each step shows once. The events of one run are in several files (one per process that trained it), which
TensorBoard reads in name order; the names here sort in the order the files were written, even for two writers
opened within one second by one process (where ``SummaryWriter``'s names may not).

The files go into the run directory itself, so they share its life: a run removed because it stopped before its
first checkpoint takes its event files with it, and a kept run's files hold every scalar of ``metrics.jsonl``
(each record is flushed as it is logged).

The records are written with TensorBoard's own record writer and protocol buffers (what ``SummaryWriter``
writes with), which import in a fraction of the time ``torch.utils.tensorboard`` takes.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: the folder of a run directory that holds its event files
TENSORBOARD_DIR = "tensorboard"

_PREFIX = "events.out.tfevents."


def available() -> bool:
    """Whether the ``tensorboard`` package (its event writer) can be imported."""
    try:
        _modules()
    except ImportError:
        return False
    return True


def _modules() -> tuple[Any, Any, Any]:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    return event_pb2, summary_pb2, RecordWriter


def scalars(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The TensorBoard scalars of one ``metrics.jsonl`` record: ``{tag: value}`` (see the module docstring).

    >>> scalars({"step": 3, "epoch": 1, "loss": 2.5, "eval": {"top1": 0.5, "name": "x"}})
    {'loss': 2.5, 'eval/top1': 0.5}
    """
    out: dict[str, float] = {}
    for key, value in record.items():
        if not prefix and key in ("step", "epoch"):
            continue
        tag = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(scalars(value, prefix=f"{tag}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[tag] = float(value)
    return out


class EventWriter:
    """Appends scalars to a new event file in ``log_dir`` (created if missing); flushes after each record.

    Args:
        log_dir: the folder of the event files (``<run>/tensorboard``).
        purge_step: on a resumed run, the first step trained again: TensorBoard discards the scalars of this
            and later steps that earlier files hold (those logged after the checkpoint, before the stop).

    Raises:
        ImportError: the ``tensorboard`` package is not installed (:func:`open_writer` returns None instead).
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        self._event_pb2, self._summary_pb2, record_writer = _modules()
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.path = log_dir / _file_name(log_dir)
        self._writer = record_writer(open(self.path, "xb"))
        step = purge_step or 0
        self._write(self._event_pb2.Event(wall_time=time.time(), step=step, file_version="brain.Event:2"))
        if purge_step is not None:
            start = self._event_pb2.SessionLog(status=self._event_pb2.SessionLog.START)
            self._write(self._event_pb2.Event(wall_time=time.time(), step=purge_step, session_log=start))
        self._writer.flush()

    def add_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Write ``values`` (``{tag: value}``) as one event at ``step`` and flush it to disk."""
        if not values:
            return
        summary = self._summary_pb2.Summary(
            value=[self._summary_pb2.Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()])
        self._write(self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
        self._writer.flush()

    def log(self, record: Mapping[str, Any]) -> None:
        """Write the scalars of one ``metrics.jsonl`` record (:func:`scalars`) at its ``step``."""
        self.add_scalars(int(record["step"]), scalars(record))

    def close(self) -> None:
        if not self._writer.closed:
            self._writer.close()

    def _write(self, event: Any) -> None:
        self._writer.write(event.SerializeToString())


def _file_name(log_dir: Path) -> str:
    """``events.out.tfevents.<time>.<sequence>.<host>.<pid>``: TensorBoard reads the files of a folder in name
    order, which must be the order they were written (a resumed run's purge applies to the files before it).
    The time (seconds) orders files of different seconds; within one second (a run resumed in the process that
    stopped it, or at once) the six-digit sequence, one past the folder's highest, keeps the order. A clock set
    back still names the new file after the last one."""
    stamp, sequence = int(time.time()), 0
    for path in log_dir.iterdir():
        fields = path.name[len(_PREFIX):].split(".") if path.name.startswith(_PREFIX) else []
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            if int(fields[0]) > stamp:
                stamp, sequence = int(fields[0]), 0
            if int(fields[0]) == stamp:
                sequence = max(sequence, int(fields[1]) + 1)
    host = socket.gethostname().replace(".", "-") or "host"
    return f"{_PREFIX}{stamp:010d}.{sequence:06d}.{host}.{os.getpid()}"


def open_writer(log_dir: Path, purge_step: int | None = None) -> EventWriter | None:
    """An :class:`EventWriter` for ``log_dir``, or None when the ``tensorboard`` package is not installed."""
    try:
        return EventWriter(log_dir, purge_step=purge_step)
    except ImportError:
        return None
