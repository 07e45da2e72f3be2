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
