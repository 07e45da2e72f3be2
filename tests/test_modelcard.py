"""The model card: a Hub metadata header from the run (library, tags, dataset, metrics with values), the
spec, and how to load; pushing points the loading example at the repository."""

from __future__ import annotations

import tomllib
import types

import torch

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


def test_card_names_only_the_plugins_the_spec_uses(toy_spec, toy_host):
    run = train(toy_spec(epochs=1)[0], host=toy_host, log=lambda m: None).run_dir
    card = (run / "README.md").read_text()
    needed = card.split("Needs these plugins installed: ")[1].splitlines()[0]
    provenance = tomllib.loads((run / "spec.toml").read_text())["provenance"]
    assert provenance["entry_points"]["toy"] and provenance["entry_points"]["core"] == "cl-core"
    assert needed == ", ".join(f"`{d}`" for d in sorted({provenance["entry_points"][n] for n in ("core", "toy")}))
    other = sorted(set(provenance["plugins"]) - {provenance["entry_points"][n] for n in ("core", "toy")})
    assert all(f"`{d}`" not in needed for d in other)


def test_model_index_leaves_out_values_that_are_not_numbers(toy_spec, toy_host):
    from cl_core.spec import load_spec

    spec = load_spec(toy_spec(epochs=1)[0], toy_host.registry())
    header = modelcard.metadata(spec, {"a/score": 0.5, "b/undefined": float("nan")})
    assert "      value: 0.5" in header and not any("nan" in line for line in header)
    assert '- "b/undefined"' in header  # still listed among the metrics


class _Noted(torch.nn.Module):
    def usage_notes(self, role, source):
        return [f"use {role} from {source}"]


def test_usage_notes_speak_once_per_module_and_follow_a_push():
    shared = _Noted()
    pipeline = types.SimpleNamespace(encoders={"query": shared, "text": shared})
    notes = modelcard.usage_notes(pipeline)
    assert notes == ["use query from path/to/this/folder"]
    card = "pipeline = from_pretrained(\"path/to/this/folder\")\n" + notes[0]
    assert modelcard.with_source(card, "org/name").endswith("use query from org/name")


def test_counts_are_not_listed_as_metrics_but_stay_in_the_results_table(toy_spec, toy_host):
    from cl_core.spec import load_spec

    spec = load_spec(toy_spec(epochs=1)[0], toy_host.registry())
    results = {"nsp/heldout/accuracy": 0.75, "nsp/heldout/count": 512.0, "simlex/spearman": 0.3,
               "simlex/pairs": 998.0, "simlex/oov": 2.0, "analogy/30k/accuracy": 0.5, "analogy/30k/asked": 90.0,
               "analogy/30k/correct": 45.0, "analogy/30k/skipped": 10.0, "my/heldout/query_count": 7.0,
               "retrieval/heldout/i2t_mean_rank": 3.0}
    header = modelcard.metadata(spec, results)
    listed = header[header.index("metrics:") + 1:header.index("model-index:")]
    assert listed == ['- "analogy/30k/accuracy"', '- "nsp/heldout/accuracy"',
                      '- "retrieval/heldout/i2t_mean_rank"', '- "simlex/spearman"']
    indexed = [line.split('"')[1] for line in header if line.startswith("    - type: ")]
    assert indexed == ["analogy/30k/accuracy", "nsp/heldout/accuracy", "retrieval/heldout/i2t_mean_rank",
                       "simlex/spearman"]
    card = modelcard.render(spec, results=results, training={}, provenance={})
    assert "| nsp/heldout/count | 512.0000 |" in card and "| simlex/oov | 2.0000 |" in card
