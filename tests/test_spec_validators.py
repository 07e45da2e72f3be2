"""Path validators of Params fields: what is reported when the spec is validated, what a run saves absolute."""

from __future__ import annotations

import os

import pytest
from attrs import field, frozen

from cl_core.spec.validators import absolute_paths, could_be_hub_id, folder_or_hub_id


@frozen(kw_only=True)
class _ModelParams:
    model: str = field(default="minilm", validator=folder_or_hub_id("minilm"))


@pytest.mark.parametrize("value, hub", [("bert-base-uncased", True), ("org/name", True), ("org/name.v2", True),
                                        ("./model", False), ("/abs/model", False), ("a/b/c", False),
                                        ("~/model", False), ("org//name", False), ("", False)])
def test_hub_id_shape(value, hub):
    assert could_be_hub_id(value) is hub


def test_folder_or_hub_id_accepts_aliases_folders_and_ids(tmp_path):
    assert _ModelParams().model == "minilm"
    assert _ModelParams(model=str(tmp_path)).model == str(tmp_path)
    assert _ModelParams(model="sentence-transformers/all-MiniLM-L6-v2").model.endswith("L6-v2")  # checked at build


@pytest.mark.parametrize("value", ["./no-such-model", "/no/such/model", "models/a/b"])
def test_a_path_that_is_not_a_folder_is_reported_at_validation(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="folder does not exist: " + os.path.abspath(value)):
        _ModelParams(model=value)


def test_a_file_is_not_a_model_folder(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="expected a folder, found a file"):
        _ModelParams(model=str(tmp_path / "weights.bin"))


def test_only_existing_folders_are_saved_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local").mkdir()
    (tmp_path / "minilm").mkdir()  # a folder named like the alias: the alias still wins
    assert absolute_paths(_ModelParams(model="local")).model == str(tmp_path / "local")
    assert absolute_paths(_ModelParams(model="minilm")).model == "minilm"
    assert absolute_paths(_ModelParams(model="org/name")).model == "org/name"


def _run(root, name, mtime=None):
    folder = root / "runs" / name
    folder.mkdir(parents=True)
    if mtime is not None:  # finished: the weights exist, written at ``mtime``
        (folder / "model.safetensors").write_bytes(b"w")
        os.utime(folder / "model.safetensors", (mtime, mtime))
    return folder


def test_a_glob_names_the_newest_finished_run_and_is_saved_concrete(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run(tmp_path, "clip-emoji-20261201-100000", mtime=1_000)
    newest = _run(tmp_path, "clip-emoji-20261202-090000", mtime=3_000)  # the weights written last win
    _run(tmp_path, "clip-emoji-20261203-080000", mtime=2_000)           # newer name, older weights
    _run(tmp_path, "clip-emoji-20261204-000000")                         # still training: skipped
    _run(tmp_path, "lm-english-20261205-000000", mtime=9_000)           # another job: not matched
    params = _ModelParams(model="runs/clip-emoji-*")
    assert params.model == "runs/clip-emoji-*"
    assert absolute_paths(params).model == str(newest)


def test_a_glob_without_a_finished_run_is_reported_at_validation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"no finished run matches 'runs/clip-emoji-\*'.*train one first"):
        _ModelParams(model="runs/clip-emoji-*")
    _run(tmp_path, "clip-emoji-20261204-000000")
    with pytest.raises(ValueError, match=r"1 unfinished: no model.safetensors in .*clip-emoji-20261204-000000"):
        _ModelParams(model="runs/clip-emoji-*")


def test_resolve_source_takes_the_newest_finished_run_of_a_glob(tmp_path, monkeypatch):
    from cl_core.errors import WeightsError
    from cl_core.weights import resolve_source

    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match="no finished run matches"):
        resolve_source("runs/lm-english-*")
    _run(tmp_path, "lm-english-a", mtime=5_000)
    newest = _run(tmp_path, "lm-english-b", mtime=6_000)
    assert resolve_source("runs/lm-english-*") == newest
