"""Trainer: deterministic on CPU, resumable after a kill with identical weights, atomic checkpoints."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from cl_core.errors import CheckpointError, ClError
from cl_core.runs import train
from cl_core.trainer import warmup_cosine


class Killed(Exception):
    """Stands for SIGKILL: the process stops right after an optimizer step; nothing else runs."""


def _weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


def test_same_seed_gives_same_weights(toy_spec, toy_host):
    a = train(toy_spec(name="a")[0], host=toy_host, log=lambda m: None)
    b = train(toy_spec(name="b")[0], host=toy_host, log=lambda m: None)
    wa, wb = _weights(a.run_dir), _weights(b.run_dir)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.mark.parametrize("kill_at", [3, 4, 5])
def test_resume_after_kill_gives_the_same_weights(toy_spec, toy_host, kill_at):
    # 4 steps per epoch, checkpoint every 2: kills land mid-epoch, on an epoch end, and after it.
    reference = train(toy_spec(checkpoint_every=2, name="full")[0], host=toy_host, log=lambda m: None)

    def kill(trainer, step):
        if step == kill_at:
            raise Killed

    path, out = toy_spec(checkpoint_every=2, name="killed")
    with pytest.raises(Killed):
        train(path, host=toy_host, callbacks=[kill], log=lambda m: None)
    run_dir = out / "killed"
    assert not (run_dir / "model.safetensors").exists()
    resumed = train(resume=run_dir, host=toy_host, log=lambda m: None)
    assert resumed.steps == reference.steps
    w_ref, w_res = _weights(reference.run_dir), _weights(run_dir)
    for k in w_ref:
        torch.testing.assert_close(w_res[k], w_ref[k], rtol=0, atol=0, msg=k)
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps)), "metrics logged past the checkpoint were kept"


def test_resume_with_gradient_accumulation(toy_spec, toy_host):
    reference = train(toy_spec("accumulate = 3", checkpoint_every=1, name="full")[0], host=toy_host, log=lambda m: None)

    def kill(trainer, step):
        if step == 2:
            raise Killed

    path, out = toy_spec("accumulate = 3", checkpoint_every=1, name="killed")
    with pytest.raises(Killed):
        train(path, host=toy_host, callbacks=[kill], log=lambda m: None)
    train(resume=out / "killed", host=toy_host, log=lambda m: None)
    w_ref, w_res = _weights(reference.run_dir), _weights(out / "killed")
    for k in w_ref:
        torch.testing.assert_close(w_res[k], w_ref[k], rtol=0, atol=0)


def test_checkpoint_leaves_no_temporary_files(toy_spec, toy_host):
    result = train(toy_spec(checkpoint_every=1)[0], host=toy_host, log=lambda m: None)
    names = sorted(p.name for p in result.run_dir.iterdir())
    from cl_core import tensorboard_log

    events = ["tensorboard"] if tensorboard_log.available() else []  # event files, when the package is installed
    assert names == ["README.md", "checkpoint.safetensors", "metrics.jsonl", "model.safetensors", "spec.toml",
                     *events]


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, toy_host):
    with pytest.raises(CheckpointError, match="not a run directory"):
        train(resume=tmp_path, host=toy_host)


def test_existing_run_directory_is_not_overwritten(toy_spec, toy_host):
    path, _ = toy_spec()
    train(path, host=toy_host, log=lambda m: None)
    with pytest.raises(ClError, match="already exists"):
        train(path, host=toy_host, log=lambda m: None)


def test_batch_larger_than_data_fails_before_writing(toy_spec, toy_host):
    path, out = toy_spec()
    from cl_core.errors import DataError
    from cl_core.spec import parse_overrides

    with pytest.raises(DataError, match="fewer than batch_size = 1000"):
        train(path, host=toy_host, overrides=parse_overrides(["sampler.batch_size=1000"]))
    assert not out.exists()


def test_warmup_then_cosine_schedule():
    f = warmup_cosine(warmup=4, total=12, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(8) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(12) == pytest.approx(0.1)


def test_real_sigkill_then_resume(toy_spec, tmp_path):
    """A real SIGKILL of `cl train` mid-run, then `cl train --resume`: same weights as a clean run."""
    # The toy plugin, installed as a distribution so the `cl` subprocess discovers it by entry point.
    plugin_dir = tmp_path / "plug"
    plugin_dir.mkdir()
    info = plugin_dir / "toy-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[cl_core]\ntoy = cl_core.testing.toy\n")
    import os

    pythonpath = os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, "CL_LOAD_PLUGINS": "toy"}
    path, out = toy_spec("", epochs=200, checkpoint_every=5, name="killed")
    ref_path, _ = toy_spec("", epochs=200, checkpoint_every=5, name="clean")
    subprocess.run(["cl", "train", str(ref_path)], env=env, check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen(["cl", "train", str(path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "killed" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    assert not (out / "killed" / "model.safetensors").exists(), "run finished before it could be killed"
    subprocess.run(["cl", "train", "--resume", str(out / "killed")], env=env, check=True, capture_output=True,
                   timeout=300)
    w_ref, w_res = _weights(out / "clean"), _weights(out / "killed")
    for k in w_ref:
        torch.testing.assert_close(w_res[k], w_ref[k], rtol=0, atol=0)


def test_run_files_get_the_modes_of_a_plain_write(toy_spec, toy_host):
    import os

    old = os.umask(0o022)
    try:
        run_dir = train(toy_spec(epochs=1, checkpoint_every=1)[0], host=toy_host, log=lambda m: None).run_dir
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in run_dir.iterdir() if p.is_file()}
    assert modes == {name: 0o644 for name in modes} and "model.safetensors" in modes  # not mkstemp's 0600


def test_resume_refuses_a_spec_file_too_and_a_finished_run(toy_spec, toy_host):
    path, out = toy_spec(epochs=1, name="done")
    train(path, host=toy_host, log=lambda m: None)
    with pytest.raises(ClError, match="not both"):
        train(path, resume=out / "done", host=toy_host)
    before = (out / "done" / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match=r"has finished \(4 of 4 steps\).*cl eval"):
        train(resume=out / "done", host=toy_host, log=lambda m: None)
    assert (out / "done" / "metrics.jsonl").read_text() == before  # nothing re-run or appended


def test_resume_with_overrides_records_them_in_the_saved_spec(toy_spec, toy_host):
    import tomllib

    path, out = toy_spec(epochs=1, name="more")
    train(path, host=toy_host, log=lambda m: None)
    result = train(resume=out / "more", overrides=[("trainer.epochs", 2)], host=toy_host, log=lambda m: None)
    assert result.steps == 8
    saved = tomllib.loads((out / "more" / "spec.toml").read_text())
    assert saved["trainer"]["epochs"] == 2  # the spec still describes the weights
    with pytest.raises(CheckpointError, match=r"has finished \(8 of 8 steps\)"):
        train(resume=out / "more", host=toy_host, log=lambda m: None)
