"""The model card: a Hub metadata header from the run (library, tags, dataset, metrics with values), the
spec, and how to load; pushing points the loading example at the repository."""

from __future__ import annotations

import tomllib

from cl_core import modelcard
from cl_core.runs import train
from cl_core.weights import from_pretrained, save_pretrained


def _header(card: str) -> list[str]:
    assert card.startswith("---\n")
    return card.split("---\n")[1].splitlines()


def test_card_header_body_and_spec(toy_spec, toy_host):
    run = train(toy_spec(epochs=1, extra='[[evaluate]]\ntype = "toy.alignment"\n')[0], host=toy_host,
                log=lambda m: None).run_dir
    card = (run / "README.md").read_text()
    header = _header(card)
    assert "library_name: cl" in header and "pipeline_tag: feature-extraction" in header
    assert '- "toy"' in header and '- "core"' in header and '- "contrastive-learning"' in header
    assert header[header.index("datasets:") + 1] == '- "toy.pairs"'
    assert '- "alignment/heldout/recall@1"' in header
    assert "model-index:" in header
    value = header[header.index('    - type: "alignment/heldout/recall@1"') + 2]
    assert value.startswith("      value: ") and 0 <= float(value.split(": ")[1]) <= 1
    assert 'pipeline = from_pretrained("path/to/this/folder")' in card
    spec_text = card.split("```toml\n")[1].split("```")[0]
    assert tomllib.loads(spec_text)["data"]["type"] == "toy.pairs"

    pushed = modelcard.with_source(card, "org/name@v1")
    assert 'pipeline = from_pretrained("org/name@v1")' in pushed and "`cl pull org/name@v1 DIR`" in pushed
    assert _header(pushed) == header


def test_save_pretrained_writes_a_card_by_default(toy_spec, toy_host, tmp_path):
    pipeline = from_pretrained(train(toy_spec(epochs=1)[0], host=toy_host, log=lambda m: None).run_dir,
                               host=toy_host)
    folder = save_pretrained(pipeline, tmp_path / "out")
    card = (folder / "README.md").read_text()
    assert "library_name: cl" in card and "No evaluators were run." in card
    assert from_pretrained(folder, host=toy_host) is not None
