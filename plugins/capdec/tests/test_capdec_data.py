"""``capdec.emoji-text``: text of every concept (held-out names included, never their images) or of the training
concepts only; the image–caption pairs and held-out image splits are ``datasets.emoji``'s own."""

from __future__ import annotations

from cl_capdec.data import build_emoji_text
from cl_capdec.params import EmojiTextParams


def _build(**kw):
    from cl_datasets.testing import emoji_fixture_paths

    return build_emoji_text(EmojiTextParams(image_size=16, holdout=0.25, captions=("annotation", "annotation_subgroup"),
                                            **emoji_fixture_paths(), **kw))


def test_all_concepts_text_and_the_emoji_splits():
    data = _build()
    splits = data.splits()
    assert set(splits) == {"train", "pairs", "heldout-openmoji", "heldout-noto"}
    held = set(splits["heldout-noto"].class_names)
    train_text = splits["train"]
    assert splits["train"].fields == ("text",)
    assert held <= set(train_text.texts) and held <= set(train_text.class_names)  # names of held-out concepts
    assert len(train_text.class_names) == len(data.emoji.train_concepts) + len(data.emoji.heldout_concepts)
    # the pairs are datasets.emoji's training pairs: no held-out concept's caption (or image) among them
    pairs = splits["pairs"]
    assert pairs is data.emoji.splits()["train"] and not held & set(pairs.texts)
    assert "every concept" in data.describe()


def test_training_concepts_only():
    data = _build(text_concepts="train", pairs=False)
    splits = data.splits()
    assert "pairs" not in splits
    held = set(splits["heldout-openmoji"].class_names)
    assert not held & set(splits["train"].texts)
    assert set(splits["train"].class_names) == {c.annotation for c in data.emoji.train_concepts}
