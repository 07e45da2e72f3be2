"""save_pretrained / from_pretrained: strict, pickle-free round trips."""

from __future__ import annotations

import pytest
import torch

from cl_core.errors import WeightsError
from cl_core.runs import train
from cl_core.weights import from_pretrained


def test_round_trip_gives_identical_embeddings(toy_spec, toy_host):
    result = train(toy_spec()[0], host=toy_host, log=lambda m: None)
    pipeline = from_pretrained(result.run_dir, host=toy_host)
    x = [torch.randn(8).numpy() for _ in range(5)]
    again = from_pretrained(result.run_dir, host=toy_host)
    torch.testing.assert_close(pipeline.embed("a", x), again.embed("a", x), rtol=0, atol=0)
    assert pipeline.scorer.logit_scale.item() != pytest.approx(torch.log(torch.tensor(1 / 0.07)).item())


def test_pickle_only_folder_is_refused(tmp_path, toy_host):
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(WeightsError, match="only pickle weights.*never unpickles"):
        from_pretrained(tmp_path, host=toy_host)


def test_mismatched_weights_are_listed(toy_spec, toy_host):

    result = train(toy_spec()[0], host=toy_host, log=lambda m: None)
    spec_path = result.run_dir / "spec.toml"
    spec_path.write_text(spec_path.read_text().replace("embed_dim = 4", "embed_dim = 5", 1))
    with pytest.raises(WeightsError, match=r"shape:      encoders.a.proj.weight expected \[5, 8\] got \[4, 8\]"):
        from_pretrained(result.run_dir, host=toy_host)
