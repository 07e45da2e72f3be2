"""``captions.metrics``: caption each evaluation split with the pipeline's decoder and score the captions.

For every split (every split but ``"train"`` by default) the items of ``role`` (images) are captioned with the
spec's ``[decoder]`` (or the evaluator's own ``decoder`` table) through ``Pipeline.caption``; the captions are
scored against each example's references (:mod:`cl_captions.references`: every caption of the example's concept,
its class name and descriptions) with the COCO caption metrics at corpus level (:mod:`cl_captions.scores`:
pycocoevalcap's BLEU-1..4, METEOR, ROUGE-L, CIDEr-D), with CLIPScore against the same model's embedding of the
item (Hessel et al., 2021), and with the exact-name rate; the wall time of captioning is reported per 100
captions. Metric names: ``<name>/<split>/<metric>`` (see :class:`cl_captions.params.MetricsParams`).

What cannot be computed is said once, as an :class:`~cl_core.api.EvaluationWarning` (one ``warning: ...`` line in
the CLI): SPICE always (its Stanford models are downloaded on first use, which cannot happen here), METEOR when
``java`` is missing (the Java PTB tokenizer is then replaced by the pure-Python one). A split that cannot be
scored (empty, without the items' field, examples without references) is skipped with a warning, or is an error
when ``splits`` names it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cl_core.api import (
    BuildError,
    ClError,
    DataError,
    DataSource,
    Dataset,
    Decoder,
    EvalContext,
    Evaluator,
    build_nested,
    spec_problem,
    warn_evaluation,
)

from .params import MetricsParams
from .references import class_names_of, fetch, has_field, references
from .scores import JAVA_HINT, clip_score, coco_scores, exact_name_rate
from .tokenize import java_available

SPICE_NOTE = ("SPICE is not computed: pycocoevalcap's SPICE downloads Stanford CoreNLP models on first use, "
              "which cannot happen here")


class CaptionMetrics(Evaluator):
    """Caption metrics of a decoder on each evaluation split (module docstring).

    Args:
        params: the evaluator's params.
        decoder: the evaluator's own decoder (built from ``params.decoder``), or None to use the pipeline's.
    """

    def __init__(self, params: MetricsParams, decoder: Decoder | None = None) -> None:
        self.params = params
        self.decoder = decoder

    # -- what is captioned, and with what ----------------------------------------------------------------
    def _decoder(self, pipeline: Any) -> Decoder:
        decoder = self.decoder if self.decoder is not None else pipeline.decoder
        if decoder is None:
            raise BuildError(f"{self.params.name} (captions.metrics): the pipeline has no [decoder] to caption with; "
                             "add one, or give the evaluator decoder = { type = ... }")
        return decoder

    def _check_roles(self, pipeline: Any) -> None:
        p = self.params
        wanted = [p.role] + ([p.text_role] if p.clipscore else [])
        missing = [r for r in wanted if r not in pipeline.encoders]
        if missing:
            raise BuildError(f"{p.name} (captions.metrics): no encoder role {', '.join(map(repr, missing))}; the "
                             f"pipeline's roles: {', '.join(pipeline.roles)}")

    def _notes(self) -> None:
        p = self.params
        warn_evaluation(f"captions.metrics: {SPICE_NOTE}")
        if java_available():
            return
        if p.tokenizer == "ptb-java":
            raise BuildError(f"{p.name} (captions.metrics): tokenizer = \"ptb-java\" needs Java: {JAVA_HINT}, or "
                             "use tokenizer = \"python\"")
        skipped = ["METEOR is not computed"] if p.meteor else []
        if p.tokenizer == "auto":
            skipped.append("captions are tokenised by the pure-Python PTB rules")
        if skipped:
            warn_evaluation(f"captions.metrics: no `java` on PATH: {' and '.join(skipped)}; {JAVA_HINT}")

    # -- evaluation ----------------------------------------------------------------------------------------
    def evaluate(self, pipeline: Any, dataset: Dataset, ctx: EvalContext) -> dict[str, float]:
        decoder = self._decoder(pipeline)
        self._check_roles(pipeline)
        self._notes()
        if self.decoder is not None:
            self.decoder.to(ctx.device)
        results: dict[str, float] = {}
        for split, source in self._splits(dataset):
            results.update(self._split(pipeline, decoder, split, source, ctx))
        return results

    def _splits(self, dataset: Dataset) -> list[tuple[str, DataSource]]:
        splits = dataset.splits()
        if self.params.splits is None:
            return [(name, src) for name, src in splits.items() if name != "train"]
        missing = [name for name in self.params.splits if name not in splits]
        if missing:
            raise DataError(f"{self.params.name} (captions.metrics): split(s) {', '.join(missing)} not found; the "
                            f"dataset has {', '.join(splits)}")
        return [(name, splits[name]) for name in self.params.splits]

    def _skip(self, split: str, reason: str) -> dict[str, float]:
        message = f"{self.params.name}: split {split!r} {reason}"
        if self.params.splits is not None:
            raise DataError(message)
        warn_evaluation(message + "; skipped")
        return {}

    def _split(self, pipeline: Any, decoder: Decoder, split: str, source: DataSource,
               ctx: EvalContext) -> dict[str, float]:
        p = self.params
        field = p.field or p.role
        n = len(source)
        if n == 0:
            return self._skip(split, "is empty")
        if not has_field(source, field):
            return self._skip(split, f"has no field {field!r} to caption")
        indices = list(range(n))
        if p.max_examples is not None and p.max_examples < n:
            indices = np.unique(np.linspace(0, n - 1, p.max_examples).round().astype(int)).tolist()
        texts = None
        with_text = "text" in p.references and has_field(source, p.text_field)
        if len(indices) == n:  # one pass fetches the items and the reference texts
            got = fetch(source, [field] + ([p.text_field] if with_text else []), indices)
            items, texts = got[field], got.get(p.text_field)
        else:
            items = fetch(source, [field], indices)[field]
        refs = references(source, indices, p.references, p.text_field, texts=texts)
        lacking = sum(not r for r in refs)
        if lacking:
            return self._skip(split, f"has {lacking} example(s) without references (references = "
                                     f"{list(p.references)}: the split gives no such texts for them)")
        batch = p.batch_size or ctx.batch_size
        start = time.perf_counter()
        captions = caption_items(pipeline, decoder, self.decoder is None, p.role, items, p.max_length, batch)
        seconds = time.perf_counter() - start
        prefix = f"{p.name}/{split}"
        problems: list[str] = []
        try:
            scores = coco_scores(captions, refs, tokenizer=p.tokenizer, meteor=p.meteor, problems=problems)
        except RuntimeError as exc:  # tokenizer = "ptb-java" and the Java tokenizer failed
            raise ClError(f"{p.name} (captions.metrics): split {split!r}: {exc}") from exc
        for problem in problems:
            warn_evaluation(f"captions.metrics: split {split!r}: {problem}")
        out = {f"{prefix}/{k}": v for k, v in scores.items()}
        if p.clipscore:
            images = pipeline.embed(p.role, items, batch_size=batch)
            texts_emb = pipeline.embed(p.text_role, [p.clipscore_template.format(c) for c in captions],
                                       batch_size=batch)
            out[f"{prefix}/clipscore"] = clip_score(images, texts_emb, p.clipscore_weight)
        names = class_names_of(source, indices)
        if names is not None:
            out[f"{prefix}/exact_name"] = exact_name_rate(captions, names, p.name_match)
        else:
            warn_evaluation(f"{p.name}: split {split!r} has no labels or class names: exact_name not reported")
        if p.timing:
            out[f"{prefix}/seconds_per_100"] = 100.0 * seconds / len(captions)
        out[f"{prefix}/count"] = float(len(captions))
        if ctx.plots_dir is not None and p.examples > 0:
            self._plot(ctx, split, items, captions, refs)
        return out

    def _plot(self, ctx: EvalContext, split: str, items: Sequence[Any], captions: Sequence[str],
              refs: Sequence[Sequence[str]]) -> None:
        from .plots import as_image, plot_captions

        chosen = np.unique(np.linspace(0, len(items) - 1, min(self.params.examples, len(items))).round().astype(int))
        images = [as_image(items[i]) for i in chosen.tolist()]
        if any(image is None for image in images):
            return  # not images: nothing to draw
        assert ctx.plots_dir is not None
        plot_captions(ctx.plots_dir / f"{self.params.name}-{split}.png", images,  # type: ignore[arg-type]
                      [captions[i] for i in chosen], [refs[i] for i in chosen],
                      title=f"{self.params.name}, split {split!r}: generated (bold) and reference captions")


@torch.no_grad()
def caption_items(pipeline: Any, decoder: Decoder, own: bool, role: str, items: Sequence[Any], max_length: int,
                  batch_size: int) -> list[str]:
    """Captions of raw ``items`` of ``role``: ``Pipeline.caption`` when ``own`` (the pipeline's decoder), else the
    same steps with ``decoder`` (the role's embeddings, or its token states for a decoder that reads them), in
    eval mode; modes are restored afterwards."""
    if own:
        return pipeline.caption(role, list(items), max_length=max_length, batch_size=batch_size)
    encoder = pipeline.encoder(role)
    device = next(itertools.chain(decoder.parameters(), decoder.buffers()), torch.zeros(0)).device
    was = encoder.training, decoder.training
    encoder.eval()
    decoder.eval()
    try:
        out: list[str] = []
        for start in range(0, len(items), batch_size):
            chunk = list(items[start : start + batch_size])
            if decoder.reads_tokens:
                at = next((q.device for q in encoder.parameters()), torch.device("cpu"))
                states = encoder.encode_states({k: v.to(at) for k, v in encoder.prepare(chunk).items()})
                out += decoder.decode(states, max_length=max_length)
            else:
                embeddings = pipeline.embed(role, chunk, batch_size=batch_size).to(device)
                out += decoder.decode(embeddings, max_length=max_length)
        return out
    finally:
        encoder.train(was[0])
        decoder.train(was[1])


def build_metrics(params: MetricsParams, ctx: Any) -> CaptionMetrics:
    """Factory of ``captions.metrics``: builds its own ``decoder`` table, and checks (when built within a spec)
    that there is a decoder to caption with and that the roles are encoder roles.

    Raises:
        SpecError: no ``[decoder]`` and no ``decoder`` table; a role that is not an encoder role (located).
        BuildError: the decoder table failed to build.
    """
    decoder = None
    if params.decoder is not None:
        decoder = build_nested(ctx, params.decoder, f"{ctx.path}.decoder", Decoder)
    elif ctx.spec is not None and ctx.decoder is None:
        raise spec_problem(ctx, ctx.path, "captions.metrics captions with the spec's [decoder], and the spec has none",
                           "add a [decoder] table, or give the evaluator its own: decoder = { type = \"...\" }")
    if ctx.encoders:
        roles = [("role", params.role)] + ([("text_role", params.text_role)] if params.clipscore else [])
        for key, role in roles:
            if role not in ctx.encoders:
                raise spec_problem(ctx, f"{ctx.path}.{key}", f"no encoder role {role!r}; encoder roles: "
                                   f"{', '.join(ctx.encoders)}")
    return CaptionMetrics(params, decoder)

