"""Caption tokenisation for the COCO caption metrics: the PTB tokenizer coco-caption uses, in Java or in Python.

pycocoevalcap (the coco-caption code; Chen et al., 2015, "Microsoft COCO Captions: Data Collection and
Evaluation Server") tokenises every candidate and reference with Stanford CoreNLP 3.4.1's ``PTBTokenizer``
(``-preserveLines -lowerCase``) and then drops the tokens in :data:`PUNCTUATIONS`. That tokenizer is a Java
program, so two implementations are offered here:

* :func:`ptb_java`: the very program pycocoevalcap runs (its bundled ``stanford-corenlp-3.4.1.jar``, same
  options, plus ``-encoding utf-8``), with the same punctuation removal. Unlike pycocoevalcap's
  ``PTBTokenizer`` it writes its temporary file into the system temporary folder, not into the installed
  package (which may be read-only), and it checks that one line comes back per caption.
* :func:`ptb_python`: a pure-Python re-implementation of the part of the PTB rules that captions use, for
  machines without Java. The rules, in order, on each whitespace-separated chunk:

  1. a *word* is a run of letters, digits and underscores, joined inside by ``-``, ``/`` and ``.`` (``t-shirt``,
     ``and/or``, ``a.b.c``, ``3.5``), by ``,`` and ``:`` between digits (``1,000``, ``10:30``) and, for a
     one-letter first part, by an apostrophe (``o'clock``); a number may carry a leading sign when it starts a
     chunk or follows a symbol (``+1``);
  2. a word keeps a final period when it is an acronym (``u.s.``, ``e.g.``) or one of the abbreviations in
     :data:`ABBREVIATIONS` (``mrs.``, ``st.``, ``etc.``); other final periods are tokens of their own;
  3. contractions are split as PTB splits them: ``don't`` -> ``do n't``, ``can't`` -> ``ca n't``,
     ``dog's`` / ``dog’s`` -> ``dog 's`` (also ``'m 're 've 'll 'd``), ``cannot`` -> ``can not``,
     ``gonna`` -> ``gon na`` (also ``gotta wanna lemme gimme``), ``'n'`` stays whole;
  4. runs of ``.`` (``...``, and ``…``), of ``!``/``?`` (``!?``), and of hyphens (``--``; en and em dashes are
     ``--``) are one token each; brackets become ``-lrb- -rrb- -lsb- -rsb- -lcb- -rcb-``; double quotes
     (straight or curly) become ``''``; any other character that is not part of a word is a token by itself
     (``< 3``, ``a +``, ``50 %``, ``$ 5``);
  5. everything is lowercased, and the tokens in :data:`PUNCTUATIONS` are dropped.

  Note that pycocoevalcap's punctuation list holds ``-LRB-`` in upper case while ``-lowerCase`` writes
  ``-lrb-``, so bracket tokens stay in the tokenised text: both implementations keep that quirk, so that
  scores match the published coco-caption numbers.

  On the 10,088 distinct emoji caption texts of ``datasets.emoji`` (annotations, CLDR and OpenMoji keywords,
  subgroups) both implementations give identical tokens; the test suite checks a list of plain captions
  against the Java program whenever ``java`` is installed. Rare constructs (URLs, e-mail addresses, SGML,
  ``AT&T``-style words, emoticons) are where the two may differ.

:func:`tokenize` picks one: ``"auto"`` uses Java when ``java`` is on ``PATH``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

#: Tokens pycocoevalcap's ``PTBTokenizer`` removes after tokenising (copied from pycocoevalcap 1.2).
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-",
                          "--", "...", ";"])

#: Words that keep a final period (a subset of the PTB lexer's abbreviation list, lower case).
ABBREVIATIONS = frozenset("""
mr mrs ms dr st co corp inc ltd jr sr vs etc pp mt ft prof gen gov sen rep rev ave blvd bros esp est fig approx
dept univ assn jan feb mar apr jun jul aug sep sept oct nov dec
""".split())

_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_APOSTROPHES = "'\u2019"
_OPEN_SINGLE = "\u2018"
_DOUBLE_QUOTES = '"\u201c\u201d\u201e\u00ab\u00bb'
_DASHES = "\u2013\u2014\u2015"
_CURRENCY = {"\u20ac": "$", "\u00a3": "#"}  # PTB writes the euro sign as $ and the pound sign as #
_WORD_CHAR = re.compile(r"\w")
#: one word (rule 1), without a sign, with a contraction's suffix when one follows (split off later)
_WORD = re.compile(r"""
    \w+
    (?:
        [-/.]\w+                            # t-shirt, and/or, a.b.c, 3.5
      | (?<=\d)[,:]\d+                      # 1,000  10:30
    )*
    (?:['\u2019](?:s|m|d|ll|re|ve|t)(?!\w))?  # dog's, don't, i'm
""", re.VERBOSE | re.IGNORECASE)
_LETTERS = re.compile(r"[^\W\d_]+")
_ACRONYM = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]")  # u.s  e.g  j  (before a final period)
_CONTRACTION = re.compile(r"(?i)^(.+?)(n['\u2019]t|['\u2019](?:s|m|d|ll|re|ve))$")
_SPLIT_WORDS = {"cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"), "wanna": ("wan", "na"),
                "lemme": ("lem", "me"), "gimme": ("gim", "me")}
#: whole words that start with or hold an apostrophe PTB keeps together
_APOSTROPHE_WORDS = re.compile(r"(?i)['\u2019]n['\u2019]|['\u2019]em|['\u2019](?:til|till|tis|twas|cause|\d0s)(?!\w)"
                               r"|['\u2019](?:s|m|d|ll|re|ve)(?!\w)|c['\u2019]mon(?!\w)|s['\u2019]mores(?!\w)")
#: tokens PTB keeps whole: the apostrophe words, URLs, e-mail addresses, hashtags, AT&T
_WHOLE = re.compile(_APOSTROPHE_WORDS.pattern + r"|(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
                    r"|[#@][^\W\d_]\w*|(?-i:[A-Z]+&[A-Z]+(?![a-z]))")
_EMOTICON = re.compile(r"[:;=][-o^]?[()]")
_UNTOKENIZABLE = frozenset("\ufffd")
_JAR = "stanford-corenlp-3.4.1.jar"

Tokenizer = Literal["auto", "ptb-java", "python"]


def java_available() -> bool:
    """Whether a ``java`` executable is on ``PATH`` (what METEOR and the Java PTB tokenizer need)."""
    return shutil.which("java") is not None


def one_line(text: str) -> str:
    """``text`` with every line break (``\\n``, ``\\r``, U+2028, ...) turned into a space: one caption per line."""
    return " ".join(str(text).splitlines())


def tokenize(captions: Sequence[str], tokenizer: Tokenizer = "auto") -> list[str]:
    """Tokenised captions (tokens joined by single spaces), one per input, as pycocoevalcap scores them.

    Args:
        captions: the texts.
        tokenizer: ``"ptb-java"`` (:func:`ptb_java`), ``"python"`` (:func:`ptb_python`) or ``"auto"`` (Java when
            ``java`` is on ``PATH``, else Python).

    Raises:
        RuntimeError: ``"ptb-java"`` without Java, or the Java tokenizer failed.
    """
    if tokenizer == "python" or (tokenizer == "auto" and not java_available()):
        return ptb_python(captions)
    return ptb_java(captions)


def ptb_python(captions: Sequence[str]) -> list[str]:
    """Pure-Python PTB tokenisation with pycocoevalcap's punctuation removal (module rules 1-5)."""
    out = []
    for caption in captions:
        tokens = [t.lower() for chunk in one_line(caption).split() for t in _chunk_tokens(chunk)]
        out.append(" ".join(t for t in tokens if t not in PUNCTUATIONS))
    return out


def _chunk_tokens(chunk: str) -> list[str]:
    """The PTB tokens of one whitespace-free chunk (before lowercasing and punctuation removal)."""
    tokens: list[str] = []
    i, n = 0, len(chunk)
    while i < n:
        ch = chunk[i]
        # a sign starts a number unless a letter precedes it: "+1", "1 +1" (PTB), but "a + b"
        signed = (ch in "+-" and i + 1 < n and chunk[i + 1].isdigit()
                  and (i == 0 or not _LETTERS.match(chunk[i - 1])))
        special = _WHOLE.match(chunk, i) or _EMOTICON.match(chunk, i)
        if special and (i == 0 or not _WORD_CHAR.match(chunk[i - 1]) or special.group(0)[1:2] in ("n", "N")):
            text = special.group(0)
            tokens.append(text[:-1] + _BRACKETS[text[-1]] if text[-1] in "()" else text)
            i = special.end()
        elif _WORD_CHAR.match(ch) or signed:
            i = _word(chunk, i + signed, tokens, ch if signed else "")
        elif ch in _APOSTROPHES or ch in _OPEN_SINGLE:
            tokens.append("'")
            i += 1
        elif ch in _UNTOKENIZABLE or unicodedata.category(ch).startswith("C"):
            i += 1  # PTB deletes characters it cannot tokenise; they separate the words around them
        else:
            run = _run(chunk, i)
            tokens.append(_symbol(chunk[i : i + run]))
            i += run
    return tokens


def _word(chunk: str, start: int, tokens: list[str], sign: str) -> int:
    """Append the word starting at ``start`` (split into its contraction parts) and return where it ends.

    Apostrophes inside a word follow PTB: after a one-letter ``d``/``l``/``o`` the word continues (``o'clock``,
    ``l'amour``); after ``j``/``y`` the apostrophe ends the first word (``y' all``); between two vowels the word
    continues (``ma'am``, ``e'er``); otherwise the apostrophe is a token of its own, between two words.
    """
    end = _WORD.match(chunk, start).end()  # type: ignore[union-attr]  # chunk[start] is a word character
    word = chunk[start:end]
    apostrophe = chunk[end : end + 1] in tuple(_APOSTROPHES) and _LETTERS.match(chunk, end + 1)
    if apostrophe:
        first, after = word.lower(), chunk[end + 1].lower()
        if first in ("j", "y"):
            tokens.append(sign + chunk[start : end + 1])
            return end + 1
        joined = ((first in ("d", "l", "o") and len(_LETTERS.match(chunk, end + 1).group(0)) >= 2)
                  or (first[-1] in "aeiouy" and after in "aeiou"))
        if joined:
            end = _WORD.match(chunk, end + 1).end()  # type: ignore[union-attr]
            tokens.extend(_split_contraction(sign + chunk[start:end]))
            return end
    if chunk[end : end + 1] == "." and chunk[end + 1 : end + 2] != "." and (
            _ACRONYM.fullmatch(word) or word.lower() in ABBREVIATIONS):
        tokens.append(sign + word + ".")
        return end + 1
    tokens.extend(_split_contraction(sign + word))
    return end


def _split_contraction(word: str) -> list[str]:
    lower = word.lower()
    if lower in _SPLIT_WORDS:
        first = len(_SPLIT_WORDS[lower][0])
        return [word[:first], word[first:]]
    match = _CONTRACTION.match(word)
    if match is None:
        return [word]
    base, suffix = match.groups()
    return [base, suffix.replace("\u2019", "'")]


def _run(chunk: str, i: int) -> int:
    """Length of the symbol token starting at ``i``: runs of periods, of ``!``/``?`` and of hyphens are one token."""
    ch = chunk[i]
    for group in (".", "!?", "-"):
        if ch in group:
            j = i
            while j < len(chunk) and chunk[j] in group:
                j += 1
            return j - i
    return 1


def _symbol(text: str) -> str:
    if text[0] == ".":
        return "..." if len(text) >= 3 else text
    if text[0] == "-":
        return "-" if len(text) == 1 else "--"
    if text in _DASHES:
        return "--"
    if text == "\u2026":
        return "..."
    if text in _DOUBLE_QUOTES:
        return "''"
    if text in _CURRENCY:
        return _CURRENCY[text]
    return _BRACKETS.get(text, text)


def ptb_java(captions: Sequence[str], *, java: str | None = None, timeout: float = 600.0) -> list[str]:
    """Tokenise with Stanford CoreNLP 3.4.1's ``PTBTokenizer`` (the jar pycocoevalcap ships), exactly as
    pycocoevalcap does (``-preserveLines -lowerCase``, then :data:`PUNCTUATIONS` dropped), reading UTF-8.

    Raises:
        RuntimeError: no ``java``, pycocoevalcap not installed, the program failed, or it returned a different
            number of lines than it was given.
    """
    java = java or shutil.which("java")
    if java is None:
        raise RuntimeError("the PTB tokenizer needs Java: install it with `apt-get install default-jre-headless`")
    jar = _jar()
    if not captions:
        return []
    with tempfile.TemporaryDirectory(prefix="cl-captions-") as folder:
        path = Path(folder) / "captions.txt"
        path.write_text("\n".join(one_line(c) for c in captions), encoding="utf-8")
        cmd = [java, "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
               "-encoding", "utf-8", str(path)]
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, env={**os.environ, "LC_ALL": "C.UTF-8"})
    if done.returncode != 0:
        raise RuntimeError(f"the Java PTB tokenizer failed (exit {done.returncode}): "
                           f"{done.stderr.decode('utf-8', 'replace').strip()[-500:]}")
    lines = done.stdout.decode("utf-8").split("\n")
    if len(lines) == len(captions) + 1 and lines[-1] == "":
        lines.pop()
    if len(lines) != len(captions):
        raise RuntimeError(f"the Java PTB tokenizer returned {len(lines)} lines for {len(captions)} captions")
    return [" ".join(w for w in line.rstrip().split(" ") if w and w not in PUNCTUATIONS) for line in lines]


def _jar() -> Path:
    try:
        import pycocoevalcap.tokenizer.ptbtokenizer as module
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RuntimeError("pycocoevalcap is not installed: pip install pycocoevalcap") from exc
    jar = Path(module.__file__).parent / _JAR
    if not jar.is_file():
        raise RuntimeError(f"pycocoevalcap has no {_JAR} at {jar}")
    return jar
