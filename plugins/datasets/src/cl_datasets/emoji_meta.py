"""Emoji concepts and their texts from npm ``openmoji`` ``data/openmoji.json`` (no Pillow, no torch).

Concepts are the OpenMoji records without skin-tone variants (``skintone == ""``) outside the
``component`` group (the bare skin-tone swatches and hair components), de-duplicated by cleaned
annotation (11 OpenMoji extras repeat a Unicode emoji's name, e.g. "brain": the standard emoji is kept,
chosen by :func:`_preference`, independent of file order). OpenMoji 17.0.0 gives 2,445 concepts.

Caption rules (each rule gives at most one caption per concept; see :func:`captions_of`):

- ``annotation``: the CLDR annotation, whitespace collapsed and lowercased
  ("OK hand" -> "ok hand", "flag: Germany" -> "flag: germany").
- ``tags``: the CLDR keywords, split at commas, each stripped and lowercased, empties and repeats
  dropped, joined with ", " ("cheerful, cheery, face, grin, ...").
- ``openmoji_tags``: OpenMoji's own keywords, same rule (absent for about half of the concepts).
- ``subgroup``: the CLDR subgroup with hyphens as spaces ("face-smiling" -> "face smiling").
- ``annotation_tags``: the annotation, a colon, then the CLDR and OpenMoji keywords together
  ("grinning face: cheerful, cheery, ..."); just the annotation when there are no keywords.
- ``annotation_subgroup``: the annotation, a comma, then the subgroup ("grinning face, face smiling").

Empty captions are not made, and a caption equal to one already made for the same concept is kept once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from attrs import frozen

from cl_core.api import DataError, indented_list

_SPACES = re.compile(r"\s+")
VARIATION_SELECTOR = "FE0F"


@frozen
class Concept:
    """One emoji concept.

    Attributes:
        hexcode: OpenMoji hexcode, e.g. ``"1F600"`` or ``"1F3F3-FE0F-200D-1F308"``.
        annotation: cleaned annotation (the concept's name and its evaluation text).
        tags: cleaned CLDR keywords caption ("" if none).
        openmoji_tags: cleaned OpenMoji keywords caption ("" if none).
        subgroup: cleaned subgroup caption.
        group: CLDR/OpenMoji group, e.g. ``"smileys-emotion"`` or ``"extras-openmoji"``.
    """

    hexcode: str
    annotation: str
    tags: str
    openmoji_tags: str
    subgroup: str
    group: str

    @property
    def chars(self) -> str:
        """The emoji as a string (what the font draws)."""
        return "".join(chr(int(h, 16)) for h in self.hexcode.split("-"))

    @property
    def key(self) -> str:
        """Codepoints without U+FE0F, lowercase, "-"-joined: how Noto PNG names are matched."""
        return codepoint_key(self.hexcode)


def codepoint_key(hexcode: str) -> str:
    """``"0023-FE0F-20E3"`` -> ``"0023-20e3"``; ``"1f600"`` -> ``"1f600"`` (FE0F dropped, lowercase)."""
    return "-".join(p.lower() for p in hexcode.split("-") if p.upper() != VARIATION_SELECTOR)


def clean_text(text: str) -> str:
    """Strip, collapse whitespace, lowercase."""
    return _SPACES.sub(" ", text).strip().lower()


def clean_keywords(text: str) -> str:
    """Comma-separated keywords -> cleaned, de-duplicated (order kept), joined with ", "."""
    out: list[str] = []
    for part in text.split(","):
        word = clean_text(part)
        if word and word not in out:
            out.append(word)
    return ", ".join(out)


def captions_of(concept: Concept, kinds: Sequence[str], templates: Sequence[str] = ("{}",)) -> list[str]:
    """The training captions of ``concept`` for the caption ``kinds`` in order (see the module rules),
    each written through every template in turn."""
    keywords = clean_keywords(", ".join(t for t in (concept.tags, concept.openmoji_tags) if t))
    out: list[str] = []
    for kind in kinds:
        text = {
            "annotation": concept.annotation,
            "tags": concept.tags,
            "openmoji_tags": concept.openmoji_tags,
            "subgroup": concept.subgroup,
            "annotation_tags": f"{concept.annotation}: {keywords}" if keywords else concept.annotation,
            "annotation_subgroup": f"{concept.annotation}, {concept.subgroup}" if concept.subgroup else concept.annotation,
        }[kind]
        if not text:
            continue
        for template in templates:
            caption = template.format(text)
            if caption not in out:
                out.append(caption)
    return out


def descriptions_of(concept: Concept, kinds: Sequence[str]) -> tuple[str, ...]:
    """Texts describing ``concept`` to a zero-shot classifier: its captions of ``kinds`` (no template),
    without the bare annotation, which the classifier has as the class name already."""
    return tuple(t for t in captions_of(concept, kinds) if t != concept.annotation)


def load_concepts(path: str | Path) -> list[Concept]:
    """Read ``openmoji.json`` and return the concepts (module rules) in file order.

    Raises:
        DataError: the file is unreadable, not a JSON list, or a record lacks a needed key.
    """
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the OpenMoji metadata {path}: {exc}") from exc
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of emoji records, got {type(records).__name__}")
    concepts: list[Concept] = []
    problems: list[str] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in ("hexcode", "annotation")):
            problems.append(f"record {i}: needs string 'hexcode' and 'annotation'")
            continue
        if rec.get("skintone", "") != "" or rec.get("group") == "component":
            continue
        hexcode = rec["hexcode"].strip().upper()
        if not re.fullmatch(r"[0-9A-F]{1,6}(-[0-9A-F]{1,6})*", hexcode):
            problems.append(f"record {i}: bad hexcode {rec['hexcode']!r}")
            continue
        annotation = clean_text(rec["annotation"])
        if not annotation:
            continue
        concepts.append(Concept(
            hexcode=hexcode,
            annotation=annotation,
            tags=clean_keywords(str(rec.get("tags") or "")),
            openmoji_tags=clean_keywords(str(rec.get("openmoji_tags") or "")),
            subgroup=clean_text(str(rec.get("subgroups") or "").replace("-", " ")),
            group=str(rec.get("group") or ""),
        ))
    if problems:
        raise DataError(f"{path}: {len(problems)} malformed record(s):\n" + indented_list(problems))
    best: dict[str, Concept] = {}
    for c in concepts:
        if c.annotation not in best or _preference(c) < _preference(best[c.annotation]):
            best[c.annotation] = c
    concepts = [c for c in concepts if best[c.annotation] is c]
    if not concepts:
        raise DataError(f"{path}: no emoji concepts found (no records without skin tone)")
    return concepts


def _preference(c: Concept) -> tuple:
    """Sort key choosing among records with the same annotation: Unicode emoji before OpenMoji extras,
    then no private-use codepoints, then fewer codepoints, then the hexcode."""
    points = [int(h, 16) for h in c.hexcode.split("-")]
    private = any(0xE000 <= p <= 0xF8FF or p >= 0xF0000 for p in points)
    return (c.group == "extras-openmoji", private, len(points), c.hexcode)
