"""Run directories: claimed atomically, never half-written (a run that stops before its first checkpoint removes
its directory, one that stops later says how to resume it), resumes checked before the data is built, clean
user errors for a diverged run, a damaged checkpoint and a checkpoint the spec no longer fits."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from cl_core import cli, runs
from cl_core.checkpoint import load_checkpoint, save_checkpoint
from cl_core.errors import CheckpointError, ClError, TrainingDivergedError
from cl_core.runs import train
from cl_core.spec import parse_overrides

# The toy spec: 64 pairs in batches of 16 = 4 steps per epoch, 3 epochs = 12 steps, a checkpoint at every
# epoch end (steps 4, 8, 12) and none in between (checkpoint_every = 0).


def quiet(message: str) -> None:
    pass


def _at_step(step: int, action):
    """A training callback that runs ``action(loop)`` after optimizer step ``step``."""

    def callback(loop, done: int) -> None:
        if done == step:
            action(loop)

    return callback


def _raise(exc: BaseException):
    def action(loop) -> None:
        raise exc

    return action


def _poison(loop) -> None:
    """Stands for a learning rate that blew the weights up: NaN in one tower."""
    with torch.no_grad():
        next(loop.pipeline.parameters()).fill_(float("nan"))


def _no_data_build(monkeypatch) -> None:
    """Make building the pipeline (and its data, which can take minutes) fail loudly."""

    def boom(*args, **kwargs):
        raise AssertionError("the data was built")

    monkeypatch.setattr(runs, "build_pipeline", boom)


@pytest.fixture
def auto_named(toy_spec):
    """A toy spec without run.name (named ``<stem>-<time>``), and its output folder."""
    path, out = toy_spec(name="auto")
    text = path.read_text()
    assert 'name = "auto"\n' in text
    path.write_text(text.replace('name = "auto"\n', ""))
    return path, out


@pytest.fixture
def run_cli(toy_host, monkeypatch):
    monkeypatch.setattr(cli, "_host", lambda: toy_host)
    return lambda *args: CliRunner().invoke(cli.main, [str(a) for a in args])


# -- 1. the run directory is claimed atomically ----------------------------------------------------------------


def test_runs_started_in_the_same_second_get_their_own_directories(auto_named, toy_host, monkeypatch):
    monkeypatch.setattr(runs, "_now", lambda: dt.datetime(2026, 1, 2, 3, 4, 5))
    path, out = auto_named
    first = train(path, host=toy_host, log=quiet, overrides=[("trainer.epochs", 1)])
    second = train(path, host=toy_host, log=quiet, overrides=[("trainer.epochs", 1)])
    assert first.run_dir == out / "auto-20260102-030405"
    assert second.run_dir == out / "auto-20260102-030405-2"
    for run_dir in (first.run_dir, second.run_dir):
        assert (run_dir / "model.safetensors").is_file()


def test_a_run_that_loses_its_name_to_a_run_started_meanwhile_takes_the_next_suffix(auto_named, toy_host,
                                                                                     monkeypatch):
    # The race of two `cl train` in the same second: the name is free when checked, taken when created.
    monkeypatch.setattr(runs, "_now", lambda: dt.datetime(2026, 1, 2, 3, 4, 5))
    path, out = auto_named
    build = runs.build_pipeline

    def build_while_another_run_starts(*args, **kwargs):
        (out / "auto-20260102-030405").mkdir(parents=True)
        (out / "auto-20260102-030405-2").mkdir()
        return build(*args, **kwargs)

    monkeypatch.setattr(runs, "build_pipeline", build_while_another_run_starts)
    result = train(path, host=toy_host, log=quiet, overrides=[("trainer.epochs", 1)])
    assert result.run_dir == out / "auto-20260102-030405-3"
    assert (result.run_dir / "model.safetensors").is_file()
    assert list((out / "auto-20260102-030405").iterdir()) == []  # the other run's directory is untouched


def test_an_explicit_name_taken_meanwhile_is_a_clean_error(toy_spec, toy_host, monkeypatch):
    path, out = toy_spec(name="mine")
    build = runs.build_pipeline

    def build_while_another_run_starts(*args, **kwargs):
        (out / "mine").mkdir(parents=True)
        return build(*args, **kwargs)

    monkeypatch.setattr(runs, "build_pipeline", build_while_another_run_starts)
    with pytest.raises(ClError, match=r"run directory .*mine already exists"):
        train(path, host=toy_host, log=quiet)
    assert list((out / "mine").iterdir()) == []  # not written into


def test_claiming_the_same_planned_directory_twice(tmp_path):
    planned = tmp_path / "runs" / "x-20260102-030405"
    assert runs._claim_run_dir(planned, explicit=False) == planned
    assert runs._claim_run_dir(planned, explicit=False) == tmp_path / "runs" / "x-20260102-030405-2"
    with pytest.raises(ClError, match="already exists"):
        runs._claim_run_dir(planned, explicit=True)


# -- 2, 3. a checkpoint the spec no longer fits, a damaged checkpoint ------------------------------------------


def test_resume_with_an_override_that_changes_the_model_names_the_tensors(toy_spec, toy_host, run_cli):
    path, out = toy_spec(name="r")
    with pytest.raises(KeyboardInterrupt):
        train(path, host=toy_host, log=quiet, callbacks=[_at_step(5, _raise(KeyboardInterrupt()))])
    saved_spec = (out / "r" / "spec.toml").read_bytes()
    wider = parse_overrides(["encoders.a.embed_dim=8", "encoders.b.embed_dim=8"])
    with pytest.raises(CheckpointError) as caught:
        train(resume=out / "r", overrides=wider, host=toy_host, log=quiet)
    message = str(caught.value)
    assert "does not fit the pipeline" in message and "incompatible with the checkpoint" in message
    assert "encoders.a.proj.weight: checkpoint [4, 8], pipeline [8, 8]" in message
    assert "encoders.b.proj.bias: checkpoint [4], pipeline [8]" in message
    assert (out / "r" / "spec.toml").read_bytes() == saved_spec
    result = run_cli("train", "--resume", out / "r", "--set", "encoders.a.embed_dim=8", "--set",
                     "encoders.b.embed_dim=8")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # no traceback
    assert "error: " in result.output and "4 model tensors differ" in result.output
    assert f"not applied: {out / 'r' / 'spec.toml'} is unchanged" in result.output
    assert (out / "r" / "spec.toml").read_bytes() == saved_spec


def test_a_mismatch_lists_a_few_tensors_then_how_many_more(tmp_path):
    def mlp(width: int) -> torch.nn.Sequential:
        return torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(4)])

    def parts(model):
        optimizer = torch.optim.AdamW(model.parameters())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": None}

    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, **parts(mlp(2)), progress={"step": 1})
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, **parts(mlp(3)))
    lines = str(caught.value).splitlines()
    assert "8 model tensors differ" in lines[0]
    assert len([line for line in lines if "shape:" in line]) == 5
    assert lines[-1].strip() == "... and 3 more"


def test_a_checkpoint_whose_trainable_parameters_changed_is_a_checkpoint_error(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=None, progress={"step": 1})
    frozen_bias = torch.optim.AdamW([model.weight])  # a part frozen since: one parameter fewer to optimize
    with pytest.raises(CheckpointError, match="the trainable parameters differ"):
        load_checkpoint(path, model=model, optimizer=frozen_bias,
                        scheduler=torch.optim.lr_scheduler.LambdaLR(frozen_bias, lambda step: 1.0), scaler=None)


def test_a_truncated_checkpoint_is_named_before_the_data_is_built(toy_spec, toy_host, run_cli, monkeypatch):
    path, out = toy_spec(name="r")
    with pytest.raises(KeyboardInterrupt):
        train(path, host=toy_host, log=quiet, callbacks=[_at_step(5, _raise(KeyboardInterrupt()))])
    checkpoint = out / "r" / "checkpoint.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes()[:300])
    _no_data_build(monkeypatch)
    with pytest.raises(CheckpointError, match=f"cannot read {checkpoint}: .*damaged checkpoint"):
        train(resume=out / "r", host=toy_host, log=quiet)
    result = run_cli("train", "--resume", out / "r")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"error: cannot read {checkpoint}" in result.output


# -- 4. a diverged run -------------------------------------------------------------------------------------------


def test_a_run_that_diverges_before_its_first_checkpoint_is_removed(toy_spec, toy_host):
    path, out = toy_spec("grad_clip = 0", name="r")
    with pytest.raises(TrainingDivergedError) as caught:
        train(path, host=toy_host, log=quiet, overrides=[("trainer.lr", 1e30)])  # a real divergence
    message = str(caught.value)
    assert "training diverged after" in message and "of 12 steps: embeddings" in message
    assert "non-finite" in message
    assert "lower trainer.lr (now 1e+30) or enable trainer.grad_clip (e.g. 1.0)" in message
    assert f"{out / 'r'} was removed" in message and f"`cl train {path}` with the same --set options" in message
    assert "--set trainer.lr=1e+29" in message
    assert not (out / "r").exists()
    assert isinstance(caught.value, FloatingPointError)  # still what the component checks raise


def test_a_run_that_diverges_after_a_checkpoint_is_kept_and_resumes_with_a_lower_lr(toy_spec, toy_host):
    path, out = toy_spec("log_every = 1", name="r")
    with pytest.raises(TrainingDivergedError) as caught:
        train(path, host=toy_host, log=quiet, callbacks=[_at_step(5, _poison)])
    run_dir = out / "r"
    message = str(caught.value)
    assert message.startswith("training diverged after 5 of 12 steps: embeddings from")
    assert "lower trainer.lr (now 0.01) or lower trainer.grad_clip (now 1)" in message
    assert (f"{run_dir} keeps its checkpoint at step 4 of 12: resume it with a lower learning rate: "
            f"`cl train --resume {run_dir} --set trainer.lr=0.001`") in message
    assert (run_dir / "checkpoint.safetensors").is_file()
    result = train(resume=run_dir, overrides=[("trainer.lr", 0.001)], host=toy_host, log=quiet)
    assert result.steps == 12
    assert all(torch.isfinite(t).all() for t in load_file(str(run_dir / "model.safetensors")).values())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in records if "lr" in r}
    assert lrs[4] > 0.005  # trained at 0.01 up to the checkpoint
    assert 0 < lrs[5] < 0.001  # the override reached the restored optimizer (it used to keep the checkpoint's lr)


def test_weights_that_are_no_longer_finite_never_overwrite_a_checkpoint(toy_spec, toy_host):
    path, out = toy_spec(name="r")

    def poison_then_checkpoint(loop) -> None:
        _poison(loop)
        loop.save_checkpoint()

    with pytest.raises(TrainingDivergedError, match=r"after 5 of 12 steps: the weights have \d+ non-finite values"):
        train(path, host=toy_host, log=quiet, callbacks=[_at_step(5, poison_then_checkpoint)])
    checkpoint = out / "r" / "checkpoint.safetensors"
    assert all(torch.isfinite(t).all() for k, t in load_file(str(checkpoint)).items() if k.startswith("model."))
    assert runs._checkpoint_step(checkpoint, 12) == " at step 4 of 12"


# -- 5. interrupted or crashed -------------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("a bug"), BrokenPipeError(32, "Broken pipe")])
def test_a_run_stopped_before_its_first_checkpoint_is_removed(toy_spec, toy_host, exc):
    path, out = toy_spec(name="r")
    with pytest.raises(type(exc)) as caught:
        train(path, host=toy_host, log=quiet, callbacks=[_at_step(2, _raise(exc))])
    assert not (out / "r").exists()
    assert caught.value.__notes__ == [
        f"{out / 'r'} was removed: it stopped before its first checkpoint, so there was nothing to resume; "
        f"the run must be restarted: `cl train {path}`"]


def test_a_run_stopped_after_a_checkpoint_names_the_resume_command(toy_spec, toy_host):
    path, out = toy_spec(name="r")
    with pytest.raises(KeyboardInterrupt) as caught:
        train(path, host=toy_host, log=quiet, callbacks=[_at_step(6, _raise(KeyboardInterrupt()))])
    assert caught.value.__notes__ == [
        f"{out / 'r'} keeps its checkpoint at step 4 of 12: continue the run with `cl train --resume {out / 'r'}`"]
    assert train(resume=out / "r", host=toy_host, log=quiet).steps == 12


def test_a_resumed_run_that_crashes_keeps_its_directory(toy_spec, toy_host):
    path, out = toy_spec(name="r")
    with pytest.raises(KeyboardInterrupt):
        train(path, host=toy_host, log=quiet, callbacks=[_at_step(5, _raise(KeyboardInterrupt()))])

    def lose_the_checkpoint_then_crash(loop) -> None:
        loop.checkpoint_path.unlink()
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        train(resume=out / "r", host=toy_host, log=quiet, callbacks=[_at_step(6, lose_the_checkpoint_then_crash)])
    assert (out / "r" / "spec.toml").is_file()  # a directory the run did not create is never removed


def test_cli_interrupt_names_the_directory_and_the_resume_command(toy_spec, toy_host, run_cli, monkeypatch):
    original = runs.train  # `cl train` imports runs.train when it runs: patched, it gets a Ctrl-C at a step
    path, out = toy_spec(name="r")
    monkeypatch.setattr(runs, "train", functools.partial(
        original, callbacks=[_at_step(6, _raise(KeyboardInterrupt()))]))
    result = run_cli("train", path)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "error: interrupted\n" in result.output
    assert f"continue the run with `cl train --resume {out / 'r'}`" in result.output

    path, out = toy_spec(name="early")
    monkeypatch.setattr(runs, "train", functools.partial(
        original, callbacks=[_at_step(2, _raise(KeyboardInterrupt()))]))
    result = run_cli("train", path)
    assert result.exit_code == 1 and f"{out / 'early'} was removed" in result.output
    assert not (out / "early").exists()


def test_cl_train_into_a_closed_pipe_stops_cleanly(toy_spec, tmp_path):
    """`cl train SPEC | head -3`: the reader leaves while the run trains; the first write after that stops the
    run (as a closed pipe stops any command) with one clean message, and the run can be resumed."""
    plugin_dir = tmp_path / "plug"
    info = plugin_dir / "toy-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[cl_core]\ntoy = cl_core.testing.toy\n")
    pythonpath = os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, "CL_LOAD_PLUGINS": "toy"}
    path, out = toy_spec(epochs=100, name="piped")  # 400 steps: seconds of training after the 3rd line
    proc = subprocess.Popen([sys.executable, "-m", "cl_core", "train", str(path)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()  # what `head -3` does after its third line
    stderr = proc.stderr.read()
    assert proc.wait(timeout=300) == 1, stderr
    assert head[1] == f"run directory: {out / 'piped'}\n" and head[2].startswith("training ")
    assert "error: standard output was closed" in stderr, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    run_dir = out / "piped"
    assert f"{run_dir} keeps its checkpoint at step 400 of 400: continue the run with " \
           f"`cl train --resume {run_dir}`" in stderr
    assert not (run_dir / "model.safetensors").exists()  # stopped at "trained 400 steps", before the outputs


# -- 6. a resume is checked before the data is built --------------------------------------------------------------


def test_resuming_a_finished_run_is_refused_before_the_data_is_built(toy_spec, toy_host, monkeypatch):
    path, out = toy_spec(epochs=1, name="done")
    train(path, host=toy_host, log=quiet)
    _no_data_build(monkeypatch)
    with pytest.raises(CheckpointError, match=r"has finished \(4 of 4 steps\)"):
        train(resume=out / "done", host=toy_host, log=quiet)


def test_resuming_a_run_without_a_checkpoint_is_refused_before_the_data_is_built(toy_spec, toy_host, monkeypatch):
    path, out = toy_spec(name="r")
    (out / "r").mkdir(parents=True)
    (out / "r" / "spec.toml").write_text(path.read_text())  # a run killed (SIGKILL) before its first checkpoint
    _no_data_build(monkeypatch)
    with pytest.raises(CheckpointError, match="no checkpoint to resume from: .* does not exist"):
        train(resume=out / "r", host=toy_host, log=quiet)


# -- 7. what a resumed run reports ---------------------------------------------------------------------------------


def test_a_resumed_run_reports_the_steps_it_trained(toy_spec, toy_host):
    path, out = toy_spec(name="r")
    with pytest.raises(KeyboardInterrupt):
        train(path, host=toy_host, log=quiet, callbacks=[_at_step(5, _raise(KeyboardInterrupt()))])
    lines: list[str] = []
    train(resume=out / "r", host=toy_host, log=lines.append)
    assert [line.split(" in ")[0] for line in lines if line.startswith("trained ")] == ["trained 8 steps (4 -> 12)"]
    lines.clear()
    train(toy_spec(name="fresh")[0], host=toy_host, log=lines.append)
    assert [line.split(" in ")[0] for line in lines if line.startswith("trained ")] == ["trained 12 steps"]


# -- 8. what a path that is not a run directory is -----------------------------------------------------------------


def test_paths_that_are_not_run_directories(toy_spec, toy_host, run_cli, tmp_path):
    path, _ = toy_spec()
    with pytest.raises(CheckpointError, match=r"nonexist does not exist \(give a run directory"):
        train(resume=tmp_path / "nonexist", host=toy_host)
    result = run_cli("train", "--resume", path)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"error: {path} is a file, not a run directory; to train from a spec file: `cl train {path}`" \
        in result.output
    result = run_cli("eval", path)  # a spec file is evaluated only when it has nothing to train
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "this spec trains: `cl train` it, then `cl eval` the run directory it writes" in result.output
    result = run_cli("eval", tmp_path / "nonexist")
    assert result.exit_code == 1 and "nonexist does not exist" in result.output
