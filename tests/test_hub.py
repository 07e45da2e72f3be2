"""Weights through the Hub: the real huggingface_hub client against a Hub-compatible server on 127.0.0.1.

`fake_hub` (conftest) starts cl_core.testing.hub.FakeHub, points HF_ENDPOINT at it, allows the network for
this test only and gives an empty HF_HOME, so every pull starts from an empty cache.
"""

from __future__ import annotations

import re
import socket

import pytest
import torch
from click.testing import CliRunner

from cl_core import cli
from cl_core.errors import HubError, WeightsError
from cl_core.hub import RepoRef
from cl_core.runs import train
from cl_core.weights import from_pretrained, push_to_hub

from .conftest import HUB_TOKEN

X = [torch.randn(8, generator=torch.Generator().manual_seed(i)).numpy() for i in range(6)]


@pytest.fixture
def run_dir(toy_spec, toy_host):
    return train(toy_spec(epochs=1)[0], host=toy_host, log=lambda m: None).run_dir


def _embed(pipeline):
    return pipeline.embed("a", X), pipeline.embed("b", X)


def test_push_then_pull_into_an_empty_cache_gives_identical_embeddings(fake_hub, run_dir, toy_host, tmp_path):
    url = push_to_hub(run_dir, "tester/toy", token=HUB_TOKEN)
    assert re.fullmatch(rf"{fake_hub.endpoint}/tester/toy/commit/[0-9a-f]{{40}}", url)
    files = fake_hub.files("tester/toy")
    assert {"spec.toml", "model.safetensors", "README.md", "metrics.jsonl"} <= set(files)
    assert "checkpoint.safetensors" not in files  # optimizer state stays local
    assert 'from_pretrained("tester/toy")' in files["README.md"].decode()

    pulled = from_pretrained("tester/toy", host=toy_host)
    local = from_pretrained(run_dir, host=toy_host)
    for a, b in zip(_embed(pulled), _embed(local)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert list((tmp_path / "hf-home" / "hub").glob("models--tester--toy/snapshots/*/model.safetensors"))


def test_revisions_branch_and_commit_id(fake_hub, toy_spec, toy_host):
    first = train(toy_spec(epochs=1, name="one")[0], host=toy_host, log=lambda m: None).run_dir
    second = train(toy_spec(epochs=2, name="two")[0], host=toy_host, log=lambda m: None).run_dir
    push_to_hub(first, "tester/toy", token=HUB_TOKEN)
    url = push_to_hub(second, "tester/toy", revision="v2", token=HUB_TOKEN)
    commit = url.rsplit("/", 1)[1]

    main, v2 = from_pretrained("tester/toy", host=toy_host), from_pretrained("tester/toy@v2", host=toy_host)
    by_id = from_pretrained(f"tester/toy@{commit}", host=toy_host)
    torch.testing.assert_close(_embed(main)[0], _embed(from_pretrained(first, host=toy_host))[0], rtol=0, atol=0)
    torch.testing.assert_close(_embed(v2)[0], _embed(from_pretrained(second, host=toy_host))[0], rtol=0, atol=0)
    torch.testing.assert_close(_embed(by_id)[0], _embed(v2)[0], rtol=0, atol=0)
    assert not torch.equal(_embed(main)[0], _embed(v2)[0])


def test_missing_revision_repository_and_bad_token_are_clear(fake_hub, run_dir, toy_host):
    push_to_hub(run_dir, "tester/toy", token=HUB_TOKEN)
    with pytest.raises(HubError, match="revision 'nope' does not exist in tester/toy"):
        from_pretrained("tester/toy@nope", host=toy_host)
    with pytest.raises(HubError, match="repository tester/missing not found"):
        from_pretrained("tester/missing", host=toy_host)
    with pytest.raises(HubError, match=r"refused the credentials \(HTTP 401"):
        push_to_hub(run_dir, "tester/toy", token="hf_wrong")
    with pytest.raises(HubError, match=r"refused the credentials \(HTTP 401"):
        push_to_hub(run_dir, "tester/other")  # no token at all


def test_private_repository_needs_the_token(fake_hub, run_dir, toy_host):
    push_to_hub(run_dir, "tester/secret", token=HUB_TOKEN, private=True)
    with pytest.raises(HubError, match="not found .*private"):
        from_pretrained("tester/secret", host=toy_host)
    assert from_pretrained("tester/secret", host=toy_host, token=HUB_TOKEN) is not None


def test_unreachable_hub_and_offline_mode(fake_hub, run_dir, toy_host, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(HubError, match="cannot be reached .*ConnectError") as pushed:
        push_to_hub(run_dir, "tester/toy", token=HUB_TOKEN)
    # the cache cannot help a push: say so instead of suggesting offline mode
    assert str(pushed.value).endswith("check the network connection and HF_ENDPOINT, then push again (a push "
                                      "needs the Hub itself; HF_HUB_OFFLINE cannot help)")
    assert "to use the cache" not in str(pushed.value)
    with pytest.raises(HubError, match="cannot be reached") as pulled:
        from_pretrained("tester/toy", host=toy_host)
    assert str(pulled.value).endswith("or set HF_HUB_OFFLINE=1 to use the cache")

    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    push_to_hub(run_dir, "tester/toy", token=HUB_TOKEN)
    from_pretrained("tester/toy", host=toy_host)  # now cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert from_pretrained("tester/toy", host=toy_host) is not None  # offline: the cache is enough
    with pytest.raises(HubError, match=r"offline mode is on \(HF_HUB_OFFLINE=1\) and it is not in the cache"):
        from_pretrained("tester/never-pulled", host=toy_host)
    with pytest.raises(HubError, match="offline mode is on"):
        push_to_hub(run_dir, "tester/toy", token=HUB_TOKEN)


def test_pickle_only_repository_is_refused_without_downloading_it(fake_hub, toy_host):
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=fake_hub.endpoint, token=HUB_TOKEN)
    api.create_repo("tester/pickled")
    api.create_commit("tester/pickled", commit_message="pickles",
                      operations=[CommitOperationAdd("pytorch_model.bin", b"\x80\x04not really")])
    with pytest.raises(WeightsError, match=r"only pickle weights \(pytorch_model.bin\).*never unpickles"):
        from_pretrained("tester/pickled", host=toy_host)
    assert not any(path.endswith("pytorch_model.bin") for _, path in fake_hub.requests if "/resolve/" in path)


def test_cli_push_and_pull(fake_hub, run_dir, toy_host, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_host", lambda: toy_host)
    runner = CliRunner()
    out = runner.invoke(cli.main, ["push", str(run_dir), "tester/toy", "--private", "--token", HUB_TOKEN])
    assert out.exit_code == 0, out.output
    assert "pushed" in out.output and fake_hub.repos["tester/toy"].private

    target = tmp_path / "pulled"
    out = runner.invoke(cli.main, ["pull", "tester/toy", str(target), "--token", HUB_TOKEN])
    assert out.exit_code == 0, out.output
    assert (target / "model.safetensors").is_file() and (target / "metrics.jsonl").is_file()
    torch.testing.assert_close(_embed(from_pretrained(target, host=toy_host))[0],
                               _embed(from_pretrained(run_dir, host=toy_host))[0], rtol=0, atol=0)


def test_cli_errors_have_no_traceback(fake_hub, run_dir, monkeypatch):
    runner = CliRunner()
    out = runner.invoke(cli.main, ["push", str(run_dir), "tester/toy", "--token", "hf_wrong"])
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert "error: cannot push to tester/toy" in out.output and "HTTP 401" in out.output
    out = runner.invoke(cli.main, ["pull", "tester/nothing@v9"])
    assert out.exit_code == 1 and "repository tester/nothing not found" in out.output
    out = runner.invoke(cli.main, ["pull", "not a repo"])
    assert out.exit_code == 1 and "is not a Hub repository id" in out.output
    out = runner.invoke(cli.main, ["push", str(run_dir.parent), "tester/toy", "--token", HUB_TOKEN])
    assert out.exit_code == 1 and "has no spec.toml" in out.output


def test_cli_pull_names_a_missing_plugin(fake_hub, run_dir, tmp_path):
    push_to_hub(run_dir, "tester/toy", token=HUB_TOKEN)
    out = CliRunner().invoke(cli.main, ["pull", "tester/toy", str(tmp_path / "x")])  # default host: no toy
    assert out.exit_code == 1, out.output
    assert "downloaded tester/toy" in out.output and "toy.pairs" in out.output


def test_repo_ref_parsing():
    assert RepoRef.parse("org/name@v1") == RepoRef("org/name", "v1")
    assert str(RepoRef.parse("org/name")) == "org/name"
    for bad in ("name", "org/name@", "a/b/c", "/abs/path"):
        with pytest.raises(HubError):
            RepoRef.parse(bad)


def test_a_missing_local_folder_is_named_too(fake_hub, toy_host, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(HubError, match="no local folder runs/typo"):
        from_pretrained("runs/typo", host=toy_host)
