"""An ImageBind run through the Hub and back, offline: ``cl_core.testing.hub``'s Hub-compatible server on 127.0.0.1
stands in for huggingface.co, with the real ``huggingface_hub`` client and an empty download cache. The run is
conftest's ``BIND_SPEC`` (8 steps) with the stand-in speech and line art, so it needs no espeak-ng."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from cl_core.api import from_pretrained, push_to_hub, train
from cl_core.plugins import PluginHost
from cl_core.testing.hub import serve_fake_hub

TOKEN = "hf_test_writer"
REPO = "tester/imagebind-tiny"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with serve_fake_hub(monkeypatch, tmp_path / "hf-home", tokens={TOKEN: "tester"}) as server:
        yield server


@pytest.mark.usefixtures("fake_media")
def test_a_pulled_run_embeds_audio_exactly_as_the_run(hub, bind_spec, pairs_folder, tmp_path):
    host = PluginHost(only=["imagebind", "clip", "datasets"], strict=True)
    run = train(bind_spec("bind"), host=host, log=lambda m: None).run_dir
    push_to_hub(run, REPO, token=TOKEN)
    pushed = hub.files(REPO)
    assert {"spec.toml", "model.safetensors", "README.md", "metrics.jsonl"} <= set(pushed)
    assert "checkpoint.safetensors" not in pushed, "optimizer state stays local"
    assert pushed["spec.toml"] == (run / "spec.toml").read_bytes()
    assert f'from_pretrained("{REPO}")' in pushed["README.md"].decode(), "the card loads from the repository"

    pulled = from_pretrained(REPO, host=host)
    # what from_pretrained downloaded: spec, weights and card, into the (empty) cache of this test
    snapshot, = (tmp_path / "hf-home" / "hub").glob("models--tester--imagebind-tiny/snapshots/*")
    assert sorted(p.name for p in snapshot.iterdir()) == ["README.md", "model.safetensors", "spec.toml"]
    trained, downloaded = load_file(str(run / "model.safetensors")), load_file(str(snapshot / "model.safetensors"))
    assert trained.keys() == downloaded.keys() and any(k.startswith("encoders.audio.") for k in trained)
    assert all(torch.equal(trained[k], downloaded[k]) for k in trained)

    wav = str(pairs_folder / "wav" / "green.wav")
    original = from_pretrained(run, host=host).embed("audio", [wav])
    assert original.shape == (1, 16) and torch.isfinite(original).all()
    torch.testing.assert_close(pulled.embed("audio", [wav]), original, rtol=0, atol=0)
