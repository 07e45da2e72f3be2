"""Corpus-level caption scores: pycocoevalcap's BLEU-1..4, METEOR, ROUGE-L and CIDEr-D, the exact-name rate and
CLIPScore. No torch here except in :func:`clip_score`'s argument types.

The COCO metrics are computed as the coco-caption evaluation server computes them (Chen et al., 2015): every
candidate and reference is PTB-tokenised (:mod:`cl_captions.tokenize`), then

* BLEU-n (Papineni et al., 2002): corpus-level modified n-gram precisions with the brevity penalty of the
  closest reference length, pycocoevalcap's ``Bleu(4)``;
* METEOR 1.5 (Denkowski & Lavie, 2014): the ``meteor-1.5.jar`` pycocoevalcap ships (``-l en -norm``), its
  corpus-level aggregate (not the mean of per-caption scores); needs Java;
* ROUGE-L (Lin, 2004): the mean over captions of the LCS F-measure (beta = 1.2) against the best reference;
* CIDEr-D (Vedantam et al., 2015): pycocoevalcap's ``Cider`` (TF-IDF n-grams up to 4 with document frequencies
  from *this* corpus's references, clipped counts, Gaussian length penalty sigma = 6, times 10), so it needs
  a corpus: with one image every n-gram's IDF is 0 and so is the score.

SPICE is not computed: pycocoevalcap's SPICE downloads Stanford CoreNLP models on first use.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal

from .tokenize import Tokenizer, java_available, tokenize

#: the metric names :func:`coco_scores` returns, in order
COCO_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider_d")
JAVA_HINT = "install Java with `apt-get install default-jre-headless`"


def coco_scores(candidates: Sequence[str], references: Sequence[Sequence[str]], *, tokenizer: Tokenizer = "auto",
                meteor: bool = True, problems: list[str] | None = None) -> dict[str, float]:
    """Corpus-level BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of ``candidates[i]`` against ``references[i]``.

    Args:
        candidates: one caption per image.
        references: for each image, its reference captions (at least one).
        tokenizer: see :func:`cl_captions.tokenize.tokenize`; candidates and references go through it together.
        meteor: compute METEOR (only possible when ``java`` is installed; otherwise it is left out).
        problems: when given, a failure of Java (METEOR's process, or the Java tokenizer under ``"auto"``) is
            described here and scoring goes on without it (METEOR left out; the pure-Python tokenizer instead)
            rather than raising.

    Returns:
        ``{"bleu1": ..., "bleu4": ..., "meteor": ..., "rouge_l": ..., "cider_d": ...}`` as pycocoevalcap computes
        them (fractions; CIDEr-D on its 0-10 scale); ``meteor`` only when computed.

    Raises:
        ValueError: no candidates, a different number of candidates and reference lists, or an image without
            references.
        RuntimeError: the Java tokenizer or METEOR failed (and ``problems`` is None).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if not candidates:
        raise ValueError("no captions to score")
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} captions but {len(references)} reference lists")
    empty = [i for i, refs in enumerate(references) if not refs]
    if empty:
        raise ValueError(f"{len(empty)} caption(s) have no references (first: #{empty[0]})")
    flat = [str(c) for c in candidates] + [str(r) for refs in references for r in refs]
    try:
        tokens = tokenize(flat, tokenizer)
    except RuntimeError as exc:
        if problems is None or tokenizer != "auto":
            raise
        problems.append(f"{exc}; tokenised by the pure-Python PTB rules instead")
        tokens = tokenize(flat, "python")
    res = {i: [tokens[i]] for i in range(len(candidates))}
    gts: dict[int, list[str]] = {}
    at = len(candidates)
    for i, refs in enumerate(references):
        gts[i] = tokens[at : at + len(refs)]
        at += len(refs)
    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"bleu{n + 1}": float(b) for n, b in enumerate(bleu)})
    if meteor and java_available():
        try:
            out["meteor"] = meteor_score(gts, res)
        except RuntimeError as exc:
            if problems is None:
                raise
            problems.append(f"{exc}; METEOR left out")
    out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    out["cider_d"] = float(Cider().compute_score(gts, res)[0])
    return {k: out[k] for k in COCO_METRICS if k in out}


def meteor_score(gts: dict[Any, list[str]], res: dict[Any, list[str]]) -> float:
    """pycocoevalcap's corpus METEOR of tokenised captions; its Java process is stopped before returning.

    Raises:
        RuntimeError: Java is missing or the METEOR process failed.
    """
    from pycocoevalcap.meteor.meteor import Meteor

    if not java_available():
        raise RuntimeError(f"METEOR needs Java: {JAVA_HINT}")
    # "|||" separates fields of METEOR's protocol: pycocoevalcap removes it from candidates only
    gts = {k: [r.replace("|||", " ") for r in v] for k, v in gts.items()}
    res = {k: [c.replace("|||", " ") for c in v] for k, v in res.items()}
    try:
        scorer = Meteor()
    except OSError as exc:
        raise RuntimeError(f"METEOR could not start Java: {exc}") from exc
    try:
        score, _ = scorer.compute_score(gts, res)
        return float(score)
    except (ValueError, OSError) as exc:  # the Java process died or answered nonsense
        detail = _drain(scorer.meteor_p.stderr)
        raise RuntimeError(f"METEOR failed: {exc}{': ' + detail if detail else ''}") from exc
    finally:
        _stop(scorer)


def _stop(scorer: Any) -> None:
    process = scorer.meteor_p
    try:
        if process.stdin and not process.stdin.closed:
            process.stdin.close()
    except OSError:
        pass
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    if scorer.lock.locked():  # compute_score failed while holding it; pycocoevalcap's __del__ takes it again
        scorer.lock.release()


def _drain(stream: Any) -> str:
    try:
        return stream.read(2000).decode("utf-8", "replace").strip() if stream is not None else ""
    except (OSError, ValueError):
        return ""


_SPACES = re.compile(r"\s+")


def normalise_name(text: str) -> str:
    """``text`` lowercased, with every punctuation character (Unicode category P*) replaced by a space and
    whitespace collapsed: how captions and class names are compared for the exact-name rate."""
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in str(text).lower())
    return _SPACES.sub(" ", text).strip()


def names_concept(caption: str, name: str, match: Literal["contains", "equals"] = "contains") -> bool:
    """Whether ``caption`` names the concept ``name`` exactly.

    Both are normalised by :func:`normalise_name`. ``"equals"``: the two are equal. ``"contains"``: the name
    occurs in the caption as a whole phrase, i.e. its words are consecutive words of the caption ("red heart"
    is in "a red heart emoji" but not in "a red hearts" or "bored heart"). An empty name is never named.
    """
    caption, name = normalise_name(caption), normalise_name(name)
    if not name:
        return False
    if match == "equals":
        return caption == name
    return f" {name} " in f" {caption} "


def exact_name_rate(captions: Sequence[str], names: Sequence[str],
                    match: Literal["contains", "equals"] = "contains") -> float:
    """Fraction of ``captions[i]`` that name ``names[i]`` (:func:`names_concept`).

    Raises:
        ValueError: no captions, or a different number of captions and names.
    """
    if not captions or len(captions) != len(names):
        raise ValueError(f"{len(captions)} captions and {len(names)} names: need as many, at least one")
    return sum(names_concept(c, n, match) for c, n in zip(captions, names)) / len(captions)


def clip_score(items: Any, captions: Any, weight: float = 2.5) -> float:
    """CLIPScore (Hessel et al., 2021, "CLIPScore: A Reference-free Evaluation Metric for Image Captioning"):
    the mean over rows of ``weight * max(cos(items[i], captions[i]), 0)``.

    Args:
        items: ``[B, N]`` embeddings of what was captioned (images).
        captions: ``[B, N]`` embeddings of the captions, in the same space (the pipeline's text tower).
        weight: w, 2.5 in the paper (it stretches the scores to about [0, 1] for CLIP ViT-B/32).

    Raises:
        ValueError: the shapes differ or are not ``[B, N]`` with B > 0.
    """
    import torch.nn.functional as F

    if items.dim() != 2 or items.shape != captions.shape or items.shape[0] == 0:
        raise ValueError(f"CLIPScore needs two [B, N] matrices of one shape, got {list(items.shape)} and "
                         f"{list(captions.shape)}")
    cos = F.cosine_similarity(items.float(), captions.float(), dim=-1)
    return float((weight * cos.clamp(min=0)).mean())
