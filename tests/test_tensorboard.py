"""TensorBoard event files next to metrics.jsonl: the same scalars at the same steps, off by a spec switch or
without the package, each step once after a resume, gone with a run removed before its first checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cl_core import tensorboard_log
from cl_core.runs import train

EVAL = '\n[[evaluate]]\ntype = "toy.alignment"'


class Killed(Exception):
    """Stands for SIGKILL: the process stops right after an optimizer step; nothing else runs."""


def _kill_at(at: int):
    def kill(trainer, step):
        if step == at:
            raise Killed

    return kill


def _events(run_dir) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` as TensorBoard reads ``<run>/tensorboard`` (purges applied)."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = accumulator.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(run_dir) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` from metrics.jsonl, values rounded to float32 as TensorBoard stores them."""
    out: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        values = {f"eval/{k}": v for k, v in record["eval"].items()} if "eval" in record else {
            k: v for k, v in record.items() if k not in ("step", "epoch")}
        for tag, value in values.items():
            out.setdefault(tag, []).append((record["step"], float(np.float32(value))))
    return out


def test_event_files_hold_the_scalars_of_metrics_jsonl(toy_spec, toy_host):
    pytest.importorskip("tensorboard")
    path, _ = toy_spec("log_every = 1\neval_every = 1" + EVAL, epochs=2)
    run_dir = train(path, host=toy_host, log=lambda m: None).run_dir
    events, expected = _events(run_dir), _expected(run_dir)
    assert {"loss", "lr", "logit_scale", "eval/alignment/heldout/recall@1"} <= set(expected)
    assert events == expected
    assert [step for step, _ in events["loss"]] == list(range(1, 9))
    assert [step for step, _ in events["eval/alignment/heldout/recall@1"]] == [4, 8]


def test_tensorboard_false_writes_no_event_files(toy_spec, toy_host):
    run_dir = train(toy_spec("tensorboard = false", epochs=1)[0], host=toy_host, log=lambda m: None).run_dir
    assert (run_dir / "metrics.jsonl").is_file() and not (run_dir / "tensorboard").exists()


def test_without_the_package_nothing_is_written_or_said(toy_spec, toy_host, monkeypatch):
    def missing():
        raise ImportError("No module named 'tensorboard'")

    monkeypatch.setattr(tensorboard_log, "_modules", missing)
    lines: list[str] = []
    run_dir = train(toy_spec(epochs=1)[0], host=toy_host, log=lines.append).run_dir
    assert (run_dir / "metrics.jsonl").is_file() and not (run_dir / "tensorboard").exists()
    assert not any("tensorboard" in line.lower() for line in lines)
    assert not tensorboard_log.available()


def test_resumed_run_logs_each_step_once(toy_spec, toy_host):
    pytest.importorskip("tensorboard")
    # 4 steps per epoch, checkpoint every 2: killed after step 3 was logged, resumed from step 2.
    path, out = toy_spec("log_every = 1" + EVAL, checkpoint_every=2, name="killed")
    with pytest.raises(Killed):
        train(path, host=toy_host, callbacks=[_kill_at(3)], log=lambda m: None)
    run_dir = out / "killed"
    assert [step for step, _ in _events(run_dir)["loss"]] == [1, 2, 3]  # step 3 is logged, past the checkpoint
    train(resume=run_dir, host=toy_host, log=lambda m: None)
    assert len(list((run_dir / "tensorboard").iterdir())) == 2  # appended: a file per process that trained it
    events = _events(run_dir)
    assert [step for step, _ in events["loss"]] == list(range(1, 13))
    assert events == _expected(run_dir)
    reference = train(toy_spec("log_every = 1" + EVAL, checkpoint_every=2, name="full")[0], host=toy_host,
                      log=lambda m: None)
    assert events == _events(reference.run_dir)  # as if never killed


def test_run_removed_before_its_first_checkpoint_takes_its_event_files(toy_spec, toy_host):
    path, out = toy_spec("log_every = 1", name="early")
    with pytest.raises(Killed):
        train(path, host=toy_host, callbacks=[_kill_at(2)], log=lambda m: None)
    assert not (out / "early").exists()


def test_purge_and_file_order_within_one_second(tmp_path):
    pytest.importorskip("tensorboard")
    log_dir = tmp_path / "tensorboard"
    first = tensorboard_log.EventWriter(log_dir)
    for step in range(1, 6):
        first.log({"step": step, "epoch": 0, "loss": float(step), "eval": {"top1": 0.5, "name": "x"}})
    first.close()
    # Many writers in one second of one process: the names still sort in the order the files were written.
    for _ in range(11):
        tensorboard_log.EventWriter(log_dir, purge_step=6).close()
    resumed = tensorboard_log.EventWriter(log_dir, purge_step=3)
    for step in range(3, 7):
        resumed.add_scalars(step, {"loss": 10.0 * step})
    resumed.close()
    names = sorted(p.name for p in log_dir.iterdir())
    assert names[0] == first.path.name and names[-1] == resumed.path.name and len(names) == 13
    events = _events(tmp_path)
    assert events["loss"] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0), (5, 50.0), (6, 60.0)]
    assert events["eval/top1"] == [(1, 0.5), (2, 0.5)]  # steps 3-5 purged: not logged again
