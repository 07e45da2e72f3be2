"""Model card (``README.md``) of a run, with the Hugging Face Hub metadata header."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .spec import PipelineSpec, dump_spec


def _yaml_list(name: str, items: list[str]) -> list[str]:
    return [f"{name}:"] + [f"- {item}" for item in items] if items else []


def render(spec: PipelineSpec, *, results: Mapping[str, float], training: Mapping[str, Any],
           provenance: Mapping[str, Any]) -> str:
    """Markdown model card: metadata header, components, results table, how to load, the spec."""
    plugins = sorted({ref.type.split(".")[0] for ref in [spec.data, spec.sampler, spec.scorer, spec.loss,
                                                        *spec.encoders.values(), *spec.evaluate]})
    header = ["---", "library_name: cl", *_yaml_list("tags", ["cl", "contrastive-learning", *plugins]),
              *_yaml_list("datasets", [spec.data.type]), *_yaml_list("metrics", sorted(results)), "---", ""]
    parts = [
        "# Contrastive model trained with cl",
        "",
        "| part | component |",
        "|---|---|",
        f"| data | `{spec.data.type}` |",
        f"| sampler | `{spec.sampler.type}` |",
        *[f"| encoder `{role}` | `{ref.type}` |" for role, ref in spec.encoders.items()],
        f"| scorer | `{spec.scorer.type}` |",
        f"| loss | `{spec.loss.type}` |",
        "",
        "## Training",
        "",
        *[f"- {k}: {v}" for k, v in training.items()],
        "",
        "## Results",
        "",
    ]
    if results:
        parts += ["| metric | value |", "|---|---|", *[f"| {k} | {v:.4f} |" for k, v in sorted(results.items())]]
    else:
        parts.append("No evaluators were run.")
    parts += [
        "",
        "## How to load",
        "",
        "```python",
        "from cl_core.weights import from_pretrained",
        "pipeline = from_pretrained(\"path/to/this/folder\")  # or \"org/name\" on the Hub",
        f"embeddings = pipeline.embed(\"{next(iter(spec.encoders))}\", items)",
        "```",
        "",
        "Needs these plugins installed: " + ", ".join(f"`{d}`" for d in sorted(provenance.get("plugins", {}))),
        "",
        "## Spec",
        "",
        "```toml",
        dump_spec(spec).rstrip(),
        "```",
        "",
    ]
    return "\n".join(header + parts)
