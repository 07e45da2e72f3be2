"""Model card (``README.md``) of a run, with the Hugging Face Hub metadata header.

The header (YAML between ``---`` lines) carries ``library_name: cl``, tags (``cl``, the plugins used), the
dataset component, the metric names and a ``model-index`` with the run's results, so the Hub shows them.
Entries that count things (pairs evaluated, questions asked, words out of vocabulary: see :func:`is_count`)
are not scores of the model, so the header leaves them out; the results table in the body keeps them.
The body lists the components, training facts, results, how to load the weights and the resolved spec.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .spec import PipelineSpec, dump_spec

LOCAL_SOURCE = "path/to/this/folder"
_LOAD_LINE = re.compile(r'^pipeline = from_pretrained\("[^"\n]*"\).*$', re.MULTILINE)


def _q(value: str) -> str:
    """A YAML scalar: JSON strings are valid YAML and need no escaping rules of their own."""
    return json.dumps(value)


def _yaml_list(name: str, items: list[str]) -> list[str]:
    return [f"{name}:"] + [f"- {_q(item)}" for item in items] if items else []


def plugins_of(spec: PipelineSpec) -> list[str]:
    """Entry-point names of the plugins a spec's components come from (``core`` included)."""
    return sorted({ref.type.split(".")[0] for _, ref in spec.components() if ref.kind != "trainer"}
                  | ({spec.trainer.type.split(".")[0]} if spec.trainer.type != "core.adamw" else set()))


#: Last parts of result names that count things rather than score the model: ``nsp/<split>/count`` (pairs
#: evaluated), word2vec's ``<set>/pairs`` and ``<set>/oov`` (pairs used and skipped) and
#: ``analogy/<N>/correct``, ``asked`` and ``skipped``. A new evaluator names its counts ``.../count`` or
#: ``..._count``.
COUNT_NAMES = frozenset({"count", "pairs", "oov", "correct", "asked", "skipped"})


def is_count(name: str) -> bool:
    """Whether the result ``name`` is a count (see :data:`COUNT_NAMES`), which the Hub metadata leaves out."""
    last = name.rsplit("/", 1)[-1]
    return last in COUNT_NAMES or last.endswith("_count")


def metadata(spec: PipelineSpec, results: Mapping[str, float], *, name: str = "cl-model") -> list[str]:
    """The YAML metadata lines (without the ``---`` fences); counts (:func:`is_count`) are not metrics."""
    results = {key: value for key, value in results.items() if not is_count(key)}
    lines = ["library_name: cl", "pipeline_tag: feature-extraction",
             *_yaml_list("tags", ["cl", "contrastive-learning", *plugins_of(spec)]),
             *_yaml_list("datasets", [spec.data.type] if spec.data else []), *_yaml_list("metrics", sorted(results))]
    if results and spec.data is not None:
        lines += ["model-index:", f"- name: {_q(name)}", "  results:", "  - task:",
                  "      type: feature-extraction", "    dataset:", f"      name: {_q(spec.data.type)}",
                  f"      type: {_q(spec.data.type)}", "    metrics:"]
        for key, value in sorted(results.items()):
            if math.isfinite(float(value)):  # the Hub's model-index takes numbers only (no nan / inf)
                lines += [f"    - type: {_q(key)}", f"      name: {_q(key)}", f"      value: {float(value):.6g}"]
    return lines


def needed_distributions(spec: PipelineSpec, provenance: Mapping[str, Any]) -> list[str]:
    """The distributions that provide the spec's components (by the provenance's ``entry_points`` map of
    plugin name -> distribution); every plugin of the provenance when that map is missing (older runs)."""
    by_entry_point = provenance.get("entry_points")
    if not by_entry_point:
        return sorted(provenance.get("plugins", {}))
    return sorted({by_entry_point.get(name, name) for name in plugins_of(spec)})


_TOP_LEVEL = re.compile(r"^(\w+|encoders\.[^.\[]+|objective\[\d+\])$")


def _nested(path: str) -> bool:
    """Whether a component path is a table inside another component's table (``objective[0].loss``)."""
    return not _TOP_LEVEL.match(path)


def _part(path: str) -> str:
    """The model card's name of a top-level component path: ``encoder `image```, ``objective 1``."""
    if path.startswith("encoders."):
        return f"encoder `{path.split('.', 1)[1]}`"
    if path.startswith(("objective[", "evaluate[")):
        kind, index = path.rstrip("]").split("[")
        return f"{kind} {int(index) + 1}"
    return path


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def render(spec: PipelineSpec, *, results: Mapping[str, float], training: Mapping[str, Any],
           provenance: Mapping[str, Any], source: str = LOCAL_SOURCE, name: str = "cl-model",
           start_results: Mapping[str, float] | None = None, usage: Sequence[str] = ()) -> str:
    """Markdown model card: metadata header, components, results table, how to load, the spec.

    Args:
        spec: the resolved spec.
        results: evaluation metrics of the run (may be empty).
        training: facts shown under "Training" (steps, device, wall time, data).
        provenance: the run's provenance (``plugins`` maps distributions to versions).
        source: what the loading example passes to ``from_pretrained`` (a folder or ``org/name``).
        name: the model's name in the Hub's ``model-index``.
        start_results: the same metrics before training (``trainer.eval_on_start``), shown next to them.
        usage: extra markdown lines for "How to load" (see :func:`usage_notes`).
    """
    header = ["---", *metadata(spec, results, name=name), "---", ""]
    parts = [
        "# Contrastive model trained with cl",
        "",
        "| part | component |",
        "|---|---|",
        *[f"| {_part(path)} | `{ref.type}` |" for path, ref in spec.components()
          if ref.kind not in ("trainer", "evaluator") and not _nested(path)],
        "",
        "## Training",
        "",
        *[f"- {k}: {v}" for k, v in training.items()],
        "",
        "## Results",
        "",
    ]
    if results and start_results:
        parts += ["| metric | before training | trained |", "|---|---|---|",
                  *[f"| {k} | {_cell(start_results.get(k))} | {v:.4f} |" for k, v in sorted(results.items())]]
    elif results:
        parts += ["| metric | value |", "|---|---|", *[f"| {k} | {v:.4f} |" for k, v in sorted(results.items())]]
    else:
        parts.append("No evaluators were run.")
    plugins = needed_distributions(spec, provenance)
    parts += [
        "",
        "## How to load",
        "",
        "```python",
        "from cl_core.weights import from_pretrained",
        f'pipeline = from_pretrained("{source}")  # a folder, "org/name" or "org/name@revision"',
        f"embeddings = pipeline.embed(\"{next(iter(spec.encoders))}\", items)" if spec.encoders else
        "texts = pipeline.decoder.decode(embeddings)  # [B, N] -> B strings",
        "```",
        "",
        "or from the shell: `cl pull " + (source if source != LOCAL_SOURCE else "org/name") + " DIR`.",
        "",
        *[line for note in usage for line in (note, "")],
        "Needs these plugins installed: " + (", ".join(f"`{d}`" for d in plugins) if plugins else "cl-core only"),
        "",
        "## Spec",
        "",
        "```toml",
        dump_spec(spec).rstrip(),
        "```",
        "",
    ]
    return "\n".join(header + parts)


def usage_notes(pipeline: Any, source: str = LOCAL_SOURCE) -> list[str]:
    """Every encoder's :meth:`~cl_core.components.Encoder.usage_notes`, in role order (an encoder that serves
    several roles, ``core.shared``, speaks once, for its first role), then the decoder's when it has the method."""
    notes, seen = [], set()
    for role, encoder in pipeline.encoders.items():
        if id(encoder) not in seen:
            seen.add(id(encoder))
            notes += encoder.usage_notes(role, source)
    decoder = getattr(pipeline, "decoder", None)  # a PipelineView-like object without one has none
    if decoder is not None:
        notes += decoder.usage_notes("decoder", source)
    return notes


def with_source(card: str, source: str) -> str:
    """The card with its loading examples (``from_pretrained``, ``cl pull`` and the plugins' usage notes)
    pointed at ``source`` (``org/name`` when pushed to the Hub)."""
    card = _LOAD_LINE.sub(f'pipeline = from_pretrained("{source}")  # a folder, "org/name" or "org/name@revision"',
                          card, count=1)
    return card.replace("`cl pull org/name DIR`", f"`cl pull {source} DIR`", 1).replace(LOCAL_SOURCE, source)
