"""``captions.clipre``: CLIPRe, the retrieval baseline of DeCap (Li et al., 2023, "DeCap: Decoding CLIP Latents
for Zero-Shot Captioning via Text-Only Training", sec. 4): an embedding is answered with the caption of a memory
whose text embedding is nearest (cosine) to it. Nothing is generated and nothing trains (``trainable = False``),
so a spec whose only decoder is CLIPRe has nothing to train: ``cl eval SPEC`` runs its evaluators.

The memory (:class:`cl_captions.params.CLIPReParams`) is every distinct caption of the spec's data splits and text
files, optionally restricted to the lines of other text files, embedded once with the pipeline's text tower when
the pipeline is built. It is kept in three buffers, saved with the model, so ``from_pretrained`` decodes the same
way without the data:

* ``memory``: ``[M, N]`` float32 unit-norm text embeddings;
* ``memory_text``: ``[bytes]`` uint8, the captions' UTF-8 bytes one after another;
* ``memory_offsets``: ``[M + 1]`` int64, where caption ``i`` starts and ends in ``memory_text``.

Their sizes come from the data, so a pipeline built to load weights (``from_pretrained``, ``cl eval RUN``) starts
with empty buffers and takes the saved shapes on load (``resize_to_saved``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cl_core.api import BuildError, DataError, Decoder, pack_texts, spec_problem, unpack_texts

from .params import CLIPReParams
from .references import fetch, has_field

#: rows of the memory scored against a batch at once (bounds the [B, rows] similarity block)
MEMORY_CHUNK = 65536


class CLIPRe(Decoder):
    """Nearest-caption retrieval from a memory of captions embedded by the text tower (module docstring).

    Args:
        captions: the memory's captions (M of them).
        embeddings: ``[M, N]`` their text embeddings (normalised here).

    ``decode(embeddings [B, N], max_length)`` returns, for each row, the memory caption of highest cosine
    similarity (the first on ties), cut to its first ``max_length`` whitespace-separated words.
    """

    trainable = False
    reads_tokens = False

    def __init__(self, captions: Sequence[str], embeddings: Tensor) -> None:
        super().__init__()
        if embeddings.dim() != 2 or embeddings.shape[0] != len(captions):
            raise ValueError(f"{len(captions)} captions need [{len(captions)}, N] embeddings, got "
                             f"{list(embeddings.shape)}")
        text, offsets = pack_texts(captions)
        self.register_buffer("memory", F.normalize(embeddings.detach().float(), dim=-1).contiguous())
        self.register_buffer("memory_text", text)
        self.register_buffer("memory_offsets", offsets)
        self._captions: list[str] | None = list(captions)

    @property
    def captions(self) -> list[str]:
        """The memory's captions, in memory order."""
        if self._captions is None:
            self._captions = unpack_texts(self.memory_text, self.memory_offsets)
        return self._captions

    def __len__(self) -> int:
        return int(self.memory.shape[0])

    def nearest(self, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """``(index [B], cosine [B])`` of the nearest memory caption of each row of ``embeddings [B, N]``.

        Raises:
            ValueError: the memory is empty, or its width is not the embeddings' (a model of another space).
        """
        if len(self) == 0:
            raise ValueError("CLIPRe's memory is empty: build it from data (splits / files) or load saved weights")
        if embeddings.shape[-1] != self.memory.shape[1]:
            raise ValueError(f"CLIPRe's memory holds {self.memory.shape[1]}-dim text embeddings, got {embeddings.shape[-1]}"
                             "-dim embeddings: they come from a model of another space")
        query = F.normalize(embeddings.detach().float().to(self.memory.device), dim=-1)
        best = torch.full((query.shape[0],), -2.0, device=query.device)
        index = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
        for start in range(0, len(self), MEMORY_CHUNK):
            sims = query @ self.memory[start : start + MEMORY_CHUNK].t()
            value, at = sims.max(dim=1)  # the first maximum: ties go to the earlier caption
            better = value > best
            best = torch.where(better, value, best)
            index = torch.where(better, at + start, index)
        return index, best

    @torch.no_grad()
    def _decode(self, embeddings: Tensor, *, max_length: int) -> list[str]:
        index, _ = self.nearest(embeddings)
        captions = self.captions
        return [" ".join(captions[i].split()[:max_length]) for i in index.tolist()]

    # -- loading: buffer sizes come from the data ----------------------------------------------------------
    def resize_to_saved(self, tensors: dict[str, Tensor]) -> None:
        """Take the shapes of saved buffers (``memory``, ``memory_text``, ``memory_offsets``; keys relative to this
        module) before a strict load, so a model built without its data loads its memory."""
        for name in ("memory", "memory_text", "memory_offsets"):
            saved = tensors.get(name)
            current = getattr(self, name)
            if saved is not None and saved.shape != current.shape:
                setattr(self, name, torch.empty(saved.shape, dtype=current.dtype, device=current.device))
        self._captions = None

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        self.resize_to_saved({k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)})
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._captions = None


def read_lines(paths: Sequence[str]) -> list[str]:
    """Non-blank lines (stripped) of UTF-8 text files, or of the ``.txt`` files of folders (sorted), in order.

    Raises:
        DataError: a file cannot be read as UTF-8 text, or a folder has no ``.txt`` files.
    """
    lines: list[str] = []
    for given in paths:
        path = Path(given).expanduser()
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        if not files:
            raise DataError(f"{path} holds no .txt files")
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(f"cannot read captions from {file}: {exc}") from exc
            lines += [line.strip() for line in text.splitlines() if line.strip()]
    return lines


def _key(text: str) -> str:
    return " ".join(text.split()).lower()


def memory_captions(params: CLIPReParams, dataset: Any, path: str = "decoder") -> list[str]:
    """The distinct captions of the memory, in first-seen order: the ``splits``' ``field``, then the ``files``;
    with ``restrict_to``, only those that are lines of its files (compared case- and spacing-insensitively).

    Raises:
        DataError: a split or field the data lacks, unreadable files, or no caption left.
    """
    texts: list[str] = []
    if params.splits:
        if dataset is None:
            raise DataError(f"{path}.splits: the memory is built from the spec's [data], and there is none (give "
                            "files = [...] and splits = [])")
        splits = dataset.splits()
        for name in params.splits:
            source = splits.get(name)
            if source is None:
                raise DataError(f"{path}.splits: no split {name!r}; the data has {', '.join(splits)}")
            if len(source) and not has_field(source, params.field):
                raise DataError(f"{path}.field: split {name!r} has no field {params.field!r}; its fields: "
                                f"{', '.join(source.fields)}")
            texts += [str(t) for t in fetch(source, [params.field], range(len(source)))[params.field]]
    texts += read_lines(params.files)
    captions = list(dict.fromkeys(t.strip() for t in texts if str(t).strip()))
    if params.restrict_to:
        allowed = {_key(line) for line in read_lines(params.restrict_to)}
        kept = [c for c in captions if _key(c) in allowed]
        if not kept:
            raise DataError(f"{path}.restrict_to: none of the {len(captions)} memory captions is a line of "
                            f"{', '.join(params.restrict_to)}")
        captions = kept
    if not captions:
        raise DataError(f"{path}: the memory has no captions")
    return captions


def build_clipre(params: CLIPReParams, ctx: Any) -> CLIPRe:
    """Factory of ``captions.clipre``: collects the memory and embeds it with the encoder of ``text_role``; when
    the caller loads saved weights afterwards (``ctx.weights_follow``), an empty memory that takes the saved one.

    Raises:
        SpecError: ``text_role`` is not an encoder role, or it trains in this spec (the memory would go stale).
        BuildError / DataError: no encoders to embed with, missing data, unreadable files.
    """
    encoder = ctx.encoders.get(params.text_role) if ctx.encoders else None
    if ctx.spec is not None and params.text_role not in ctx.spec.encoders:
        raise spec_problem(ctx, f"{ctx.path}.text_role", f"no encoder role {params.text_role!r}; encoder roles: "
                           f"{', '.join(ctx.spec.encoders) or 'none'}")
    if ctx.weights_follow:
        width = getattr(encoder, "embed_dim", 0) if encoder is not None else 0
        return CLIPRe([], torch.zeros(0, int(width)))
    if encoder is None:
        raise BuildError(f"{ctx.path or 'captions.clipre'}: the memory is embedded with the encoder of role "
                         f"{params.text_role!r}, and none is built")
    if ctx.spec is not None and ctx.spec.trains and any(q.requires_grad for q in encoder.parameters()):
        raise spec_problem(ctx, f"{ctx.path}.text_role", f"the encoder of role {params.text_role!r} trains in this "
                           "spec, and CLIPRe embeds its memory once, at build time",
                           "freeze it (e.g. type = \"core.from-run\"), or evaluate CLIPRe in a spec with nothing to "
                           "train (`cl eval SPEC`)")
    captions = memory_captions(params, ctx.dataset, ctx.path or "decoder")
    embeddings = encoder.embed(captions, batch_size=params.batch_size)
    return CLIPRe(captions, embeddings)
