"""``capdec.emoji-text``: the emoji concepts of ``datasets.emoji`` as text for a text-only captioner (CapDec),
with ``datasets.emoji``'s held-out image splits to evaluate on and its image–caption training pairs for the
modality offset (see :class:`cl_capdec.params.EmojiTextParams`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from cl_core.api import DataError, DataSource, Dataset

from .params import EmojiTextParams


class TextSource(DataSource):
    """Captions only: field ``"text"``, ``labels`` indexing ``class_names`` (the concepts' names).

    Args:
        texts: the captions.
        labels: ``[N]`` int64 concept of each caption.
        class_names: label -> concept name.
        class_descriptions: label -> further texts describing the concept, or None.
    """

    fields = ("text",)

    def __init__(self, texts: Sequence[str], labels: np.ndarray, class_names: Sequence[str],
                 class_descriptions: Sequence[Sequence[str]] | None = None) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(texts),):
            raise ValueError(f"labels {labels.shape} must be ({len(texts)},)")
        self.texts = list(texts)
        self.labels = labels
        self.class_names = list(class_names)
        self.class_descriptions = None if class_descriptions is None else [tuple(d) for d in class_descriptions]

    def __len__(self) -> int:
        return len(self.texts)

    def get(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        n = len(self)
        out = []
        for i in indices:
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"example index {i} out of range for a split of {n}")
            out.append(self.texts[i])
        return {"text": out}


class EmojiText(Dataset):
    """The built ``capdec.emoji-text`` dataset.

    Attributes:
        emoji: the underlying ``datasets.emoji`` dataset (its concept split).
        text_concepts: the concepts whose captions are the "train" text.
    """

    def __init__(self, params: EmojiTextParams, emoji: Any) -> None:
        from cl_datasets.emoji_meta import captions_of, descriptions_of

        self.params = params
        self.emoji = emoji
        chosen = emoji.train_concepts if params.text_concepts == "train" else \
            tuple(emoji.train_concepts) + tuple(emoji.heldout_concepts)
        self.text_concepts = tuple(chosen)
        texts: list[str] = []
        labels: list[int] = []
        for label, concept in enumerate(chosen):
            for caption in captions_of(concept, params.captions, params.templates):
                texts.append(caption)
                labels.append(label)
        if not texts:
            raise DataError(f"capdec.emoji-text: captions {list(params.captions)} give no training text")
        splits: dict[str, DataSource] = {
            "train": TextSource(texts, np.array(labels), [c.annotation for c in chosen],
                                [descriptions_of(c, params.descriptions) for c in chosen]),
        }
        inner = emoji.splits()
        if params.pairs:
            splits["pairs"] = inner["train"]
        splits.update({name: source for name, source in inner.items() if name.startswith("heldout-")})
        self._splits = splits

    def splits(self) -> Mapping[str, DataSource]:
        return self._splits

    def describe(self) -> str:
        scope = "every concept (held-out names included, never their images)" if self.params.text_concepts == "all" \
            else "the training concepts"
        return f"text of {len(self.text_concepts)} concepts ({scope}); " + super().describe()


def build_emoji_text(params: EmojiTextParams, ctx: Any = None) -> EmojiText:
    """Factory of ``capdec.emoji-text``: builds ``datasets.emoji`` with the shared fields, then the text split.

    Raises:
        DataError: as ``datasets.emoji`` (data missing or unreadable, bad images without ``skip_bad``).
    """
    from cl_datasets.emoji import build_emoji
    from cl_datasets.params import EmojiParams

    shared = {f.name: getattr(params, f.name) for f in attrs.fields(EmojiParams) if hasattr(params, f.name)}
    return EmojiText(params, build_emoji(EmojiParams(**shared), ctx))
