"""The PTB tokenisation of the caption metrics: the pure-Python rules against outputs of the Java program
pycocoevalcap runs (recorded here, and compared live when ``java`` is installed)."""

from __future__ import annotations

import os
import shutil

import pytest

from cl_captions.tokenize import PUNCTUATIONS, java_available, ptb_java, ptb_python, tokenize

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java (apt-get install default-jre-headless)")

#: plain captions and what Stanford CoreNLP 3.4.1's PTBTokenizer (-preserveLines -lowerCase) followed by
#: pycocoevalcap's punctuation removal makes of them (recorded from the Java program)
PLAIN = {
    "A dog's face, smiling!": "a dog 's face smiling",
    "flag: germany": "flag germany",
    "grinning face: cheerful, cheery, face, grin...": "grinning face cheerful cheery face grin",
    "A man in a t-shirt eating ice-cream.": "a man in a t-shirt eating ice-cream",
    "Two cats sitting on a red couch.": "two cats sitting on a red couch",
    "The woman's hat (a red one) is on the table": "the woman 's hat -lrb- a red one -rrb- is on the table",
    "he doesn't know; she can't see": "he does n't know she ca n't see",
    "a \"quoted\" word and 'single' quotes": "a quoted word and single quotes",
    "man\u2019s shoe": "man 's shoe",
    "eight o\u2019clock: 8, 8:00, clock": "eight o\u2019clock 8 8:00 clock",
    "police car: 5\u20130, car, cops": "police car 5 0 car cops",
    "100%, a+, <3, +1": "100 % a + < 3 +1",
    "st. vincent & grenadines": "st. vincent & grenadines",
    "u.s. virgin islands": "u.s. virgin islands",
    "A BIG RED HEART": "a big red heart",
    "caf\u00e9 na\u00efve \u65e5\u672c": "caf\u00e9 na\u00efve \u65e5\u672c",
    "rock 'n' roll at 10:30": "rock 'n' roll at 10:30",
    "": "",
    "   ": "",
    "new\nline": "new line",
}


def test_python_rules_give_the_recorded_ptb_tokens():
    captions = list(PLAIN)
    assert ptb_python(captions) == [PLAIN[c] for c in captions]


def test_coco_keeps_lowercased_bracket_tokens():
    # pycocoevalcap lists "-LRB-" in upper case but -lowerCase writes "-lrb-": the tokens stay, in both paths
    assert "-LRB-" in PUNCTUATIONS and "-lrb-" not in PUNCTUATIONS
    assert ptb_python(["a (b) [c] {d}"]) == ["a -lrb- b -rrb- -lsb- c -rsb- -lcb- d -rcb-"]


def test_python_tokenizer_is_chosen_without_java(monkeypatch):
    import cl_captions.tokenize as module

    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    assert not java_available()
    assert tokenize(["A dog, running."], "auto") == ["a dog running"]
    with pytest.raises(RuntimeError, match="apt-get install default-jre-headless"):
        tokenize(["a dog"], "ptb-java")


@needs_java
def test_java_and_python_give_the_same_tokens_on_plain_captions():
    captions = list(PLAIN)
    assert ptb_java(captions) == ptb_python(captions) == [PLAIN[c] for c in captions]


@needs_java
def test_java_tokens_match_pycocoevalcaps_own_tokenizer():
    """Our Java runner (temporary file outside the package, -encoding utf-8) gives what pycocoevalcap's
    ``PTBTokenizer`` gives (it writes its temporary file into the installed package: skipped if read-only)."""
    from pycocoevalcap.tokenizer import ptbtokenizer

    if not os.access(os.path.dirname(ptbtokenizer.__file__), os.W_OK):
        pytest.skip("pycocoevalcap's tokenizer writes into its package folder, which is read-only here")
    ascii_captions = [c for c in PLAIN if c.isascii() and c.strip() and "\n" not in c]
    theirs = ptbtokenizer.PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(ascii_captions)})
    assert ptb_java(ascii_captions) == [theirs[i][0] for i in range(len(ascii_captions))]


@needs_java
def test_java_and_python_agree_on_every_emoji_caption_text_of_the_fixture():
    """Every caption kind of the emoji concepts in cl-datasets' committed slice (annotations, keywords, subgroups:
    colons, commas, curly apostrophes, ampersands). On the full OpenMoji set (10,088 distinct texts) the two agree
    on all of them as well; that needs the npm data, so only the slice is checked here."""
    pytest.importorskip("cl_datasets")
    from cl_datasets.emoji_meta import captions_of, load_concepts
    from cl_datasets.testing import emoji_fixture_paths

    kinds = ["annotation", "tags", "openmoji_tags", "subgroup", "annotation_tags", "annotation_subgroup"]
    texts = sorted({t for c in load_concepts(emoji_fixture_paths()["openmoji_json"]) for t in captions_of(c, kinds)})
    assert len(texts) > 100
    assert ptb_python(texts) == ptb_java(texts)
