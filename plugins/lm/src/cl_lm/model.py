"""``lm.gpt2``: a small GPT-2-style causal LM with its tokenizer, as a trainable :class:`~cl_core.api.Decoder`.

The network is ``transformers``' ``GPT2LMHeadModel`` (Radford et al., 2019, "Language Models are Unsupervised
Multitask Learners": pre-norm blocks, learned positions, output layer tied to the token embeddings) built from a
``GPT2Config`` of the spec's size, with sdpa attention. Three ways it is used:

* language modelling (``lm.next-token``): :meth:`GPT2Decoder.lm_rows` turns texts into rows of ids (packed or
  one per text) and :meth:`GPT2Decoder.lm_loss` is the mean next-token cross-entropy over them;
* captioning (``core.caption``): the condition embedding ``[B, K * D]`` is read as K prefix embeddings ``[B, K,
  D]`` that the caption follows (ClipCap's prefix, Mokady et al., 2021, "ClipCap: CLIP Prefix for Image
  Captioning", with an identity mapper); :meth:`prepare` and :meth:`_caption_loss` give the teacher-forced
  L = -sum_j log p(c_j | prefix, c_<j);
* generation: :meth:`GPT2Decoder.generate` (prefixes and/or text prompts) and :meth:`decode` (prefixes), with
  :mod:`cl_lm.generate`.

The tokenizer travels in the state dict as the ``uint8`` buffer ``tokenizer_json`` (see
:mod:`cl_lm.tokenizer`), so ``model.safetensors`` alone rebuilds the LM with its tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cl_core.api import BuildError, Decoder, EncoderOutput, FrozenParts, LossOutput, hf

from .generate import Decoding, Generated, decoding_of, generate
from .params import GPT2Params
from .tokenizer import LMTokenizer, bytes_tokenizer, folder_tokenizer, minilm_tokenizer, train_bpe

#: Label of a position that is not a target (``transformers``' and PyTorch's ignore index).
IGNORE = -100


def gpt2_config(params: GPT2Params, tokenizer: LMTokenizer, vocab_rows: int) -> Any:
    """The ``GPT2Config`` of ``params`` with ``vocab_rows`` token embeddings and the tokenizer's special ids."""
    from transformers import GPT2Config

    config = GPT2Config(vocab_size=vocab_rows, n_positions=params.context, n_embd=params.width,
                        n_layer=params.layers, n_head=params.heads, resid_pdrop=params.dropout,
                        embd_pdrop=params.dropout, attn_pdrop=params.dropout, bos_token_id=tokenizer.bos_id,
                        eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id, tie_word_embeddings=True)
    return hf.configure(config, error=BuildError)


def vocab_rows(params: GPT2Params, tokenizer: LMTokenizer) -> int:
    """Token embedding rows: ``vocab_size`` for a trained BPE (a BPE that learned fewer tokens leaves rows
    unused), else the tokenizer's size."""
    return max(params.vocab_size, tokenizer.vocab_size) if params.tokenizer == "bpe" else tokenizer.vocab_size


class GPT2Decoder(FrozenParts, Decoder):
    """See the module docstring.

    Attributes:
        params: the :class:`~cl_lm.params.GPT2Params` it was built with.
        model: the ``GPT2LMHeadModel``.
        tokenizer_json: ``uint8`` buffer, the serialised tokenizer.
    """

    trainable = True

    def __init__(self, params: GPT2Params, tokenizer: LMTokenizer, rows: int | None = None) -> None:
        from transformers import GPT2LMHeadModel

        super().__init__()
        self.params = params
        self._tokenizer = tokenizer
        self.model = GPT2LMHeadModel(gpt2_config(params, tokenizer, rows or vocab_rows(params, tokenizer)))
        self.register_buffer("tokenizer_json", torch.from_numpy(tokenizer.to_bytes()))
        self.set_trainable(params.trainable_layers)

    def set_trainable(self, layers: int | None) -> None:
        """Choose what trains: None everything, 0 nothing (the LM frozen), k the top k blocks, the final norm and
        the head (``cl_core.hf.locked_parts``); locked parts stay in eval mode.

        Raises:
            ValueError: ``layers`` negative or above the LM's blocks.
        """
        parts = [] if layers is None else hf.locked_parts(self.model, layers)
        self.model.requires_grad_(True)
        object.__setattr__(self, "_frozen_parts", [])  # FrozenParts' list: start again from nothing locked
        self.model.train(self.training)
        if parts:
            self.freeze_parts(*parts)

    # -- what it is ----------------------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> LMTokenizer:
        """The :class:`~cl_lm.tokenizer.LMTokenizer` (the one in the loaded weights after a load)."""
        return self._tokenizer

    @property
    def width(self) -> int:
        """D: the width of token and prefix embeddings."""
        return int(self.model.config.n_embd)

    @property
    def context(self) -> int:
        """The most positions (prefix + text + generated tokens) the LM attends over."""
        return int(self.model.config.n_positions)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """Token embeddings ``[B, T, D]`` of ids ``[B, T]`` (to join to a prefix)."""
        return self.model.get_input_embeddings()(ids)

    def settings(self, **overrides: Any) -> Decoding:
        """The :class:`~cl_lm.generate.Decoding` of the params (method, beams, top-k/p, temperature, seed, stop),
        with ``overrides`` (``max_new_tokens``, ``method``, ...)."""
        return decoding_of(self.params, **overrides)

    # -- language modelling --------------------------------------------------------------------------------------
    def _text_ids(self, texts: Sequence[str], what: str) -> list[list[int]]:
        if len(texts) == 0:
            raise ValueError(f"no {what} given")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"{what}[{i}]: expected a string, got {type(t).__name__}")
            if not t.strip():
                raise ValueError(f"{what}[{i}] is empty (or only whitespace): nothing to learn from")
        return self._tokenizer.ids(texts)

    def lm_rows(self, texts: Sequence[str], *, pack: bool = True) -> dict[str, Tensor]:
        """Training rows of ``texts``: each text is ``<bos> ids <eos>`` (one ``<eot>`` between texts when begin and
        end are the same token, as GPT-2's).

        Args:
            pack: join the texts into one stream cut into rows of ``context`` tokens that overlap by one (each
                token is predicted once, GPT-2 / nanoGPT packing); else one row per text, cut to ``context``.

        Returns:
            ``ids`` ``[R, L]`` int64 (``pad_id`` after a row's end) and ``labels`` ``[R, L]`` (the ids, -100 where
            nothing is predicted), ``L <= context``.

        Raises:
            ValueError: no texts, or a text that is not a string or is empty.
        """
        tok = self._tokenizer
        pieces = self._text_ids(texts, "texts")
        same = tok.bos_id == tok.eos_id
        if pack:
            stream: list[int] = []
            for ids in pieces:
                if not stream or not same:
                    stream.append(tok.bos_id)
                stream += ids + [tok.eos_id]
            step = self.context - 1
            rows = [stream[i : i + self.context] for i in range(0, max(1, len(stream) - 1), step)]
            rows = [r for r in rows if len(r) > 1]
        else:
            rows = [([tok.bos_id] + ids + [tok.eos_id])[: self.context] for ids in pieces]
        width = max(len(r) for r in rows)
        ids_t = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        for i, r in enumerate(rows):
            ids_t[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            labels[i, : len(r)] = ids_t[i, : len(r)]
        return {"ids": ids_t, "labels": labels}

    def lm_loss(self, ids: Tensor, labels: Tensor) -> Tensor:
        """Mean next-token cross-entropy (nats per predicted token): position t predicts ``labels[:, t + 1]``,
        positions labelled -100 are not targets (the loss ``GPT2LMHeadModel(labels=...)`` computes).

        Args:
            ids: ``[R, L]`` int64 input ids. labels: ``[R, L]`` int64, -100 where nothing is predicted.

        Raises:
            ValueError: shapes differ, ``L`` exceeds the context, or no position is a target.
        """
        if ids.shape != labels.shape or ids.dim() != 2:
            raise ValueError(f"ids {list(ids.shape)} and labels {list(labels.shape)} must be the same [R, L]")
        if ids.shape[1] > self.context:
            raise ValueError(f"rows of {ids.shape[1]} tokens exceed the LM's context of {self.context}")
        targets = labels[:, 1:]
        if not bool((targets != IGNORE).any()):
            raise ValueError("no position to predict (every label is -100)")
        mask = (labels != IGNORE).long()
        logits = self.model(input_ids=ids, attention_mask=mask).logits
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                               ignore_index=IGNORE)

    @torch.no_grad()
    def score(self, texts: Sequence[str], *, batch_size: int = 64) -> tuple[Tensor, Tensor]:
        """Negative log-likelihood of each text as ``<bos> text <eos>``, in windows of ``context`` tokens that
        overlap by one (every token after ``<bos>`` predicted once; eval mode).

        Returns:
            ``([N] summed NLL in nats, [N] predicted tokens)``, float64 and int64.

        Raises:
            ValueError: see :meth:`lm_rows`.
        """
        tok = self._tokenizer
        step = self.context - 1
        windows: list[tuple[int, list[int]]] = []
        for i, ids in enumerate(self._text_ids(texts, "texts")):
            seq = [tok.bos_id] + ids + [tok.eos_id]
            windows += [(i, seq[s : s + self.context]) for s in range(0, len(seq) - 1, step)]
        nll = torch.zeros(len(texts), dtype=torch.float64)
        count = torch.zeros(len(texts), dtype=torch.long)
        was_training = self.training
        self.eval()
        device = self.model.get_input_embeddings().weight.device
        try:
            windows.sort(key=lambda w: len(w[1]))  # similar lengths together: less padding
            for start in range(0, len(windows), batch_size):
                part = windows[start : start + batch_size]
                width = max(len(w) for _, w in part)
                ids = torch.full((len(part), width), tok.pad_id, dtype=torch.long)
                labels = torch.full((len(part), width), IGNORE, dtype=torch.long)
                for r, (_, w) in enumerate(part):
                    ids[r, : len(w)] = torch.tensor(w)
                    labels[r, : len(w)] = ids[r, : len(w)]
                ids, labels = ids.to(device), labels.to(device)
                logits = self.model(input_ids=ids, attention_mask=(labels != IGNORE).long()).logits.float()
                target = labels[:, 1:]
                lp = logits[:, :-1].log_softmax(-1).gather(-1, target.clamp(min=0)[..., None])[..., 0]
                lp = (lp * (target != IGNORE)).sum(1).double().cpu()
                for r, (i, w) in enumerate(part):
                    nll[i] -= lp[r]
                    count[i] += len(w) - 1
        finally:
            self.train(was_training)
        return nll, count

    # -- captioning (core.caption) -------------------------------------------------------------------------------
    def _prefix(self, embeddings: Tensor) -> Tensor:
        """``[B, K * D]`` -> ``[B, K, D]``. Raises ValueError when the width is not a multiple of D."""
        n = embeddings.shape[-1]
        if n % self.width:
            raise ValueError(f"condition embeddings are {n} wide; lm.gpt2 reads them as K prefix embeddings of width "
                             f"{self.width}, so the width must be a multiple of {self.width} (map them first, as "
                             f"ClipCap's mapper does)")
        return embeddings.reshape(embeddings.shape[0], n // self.width, self.width)

    def prepare(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Caption targets: ``ids`` ``[B, T]`` (caption tokens then the end token, ``pad_id`` after; each cut to
        ``context - 1`` tokens) and ``mask`` ``[B, T]`` (1 = target).

        Raises:
            ValueError: no captions, or one that is not a string or is empty.
        """
        tok = self._tokenizer
        rows = [(ids + [tok.eos_id])[: self.context - 1] for ids in self._text_ids(texts, "captions")]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return {"ids": ids, "mask": mask}

    def _caption_loss(self, condition: EncoderOutput, targets: Mapping[str, Tensor]) -> LossOutput:
        prefix = self._prefix(condition.embedding)
        k = prefix.shape[1]
        ids, mask = targets["ids"], targets["mask"]
        room = self.context - k + 1  # the last target is predicted from position context - 1
        if room < 1:
            raise ValueError(f"a prefix of {k} embeddings leaves no room in the LM's context of {self.context}")
        ids, mask = ids[:, :room], mask[:, :room]
        inputs = torch.cat([prefix.to(self.model.dtype), self.embed_tokens(ids[:, :-1])], dim=1)
        attention = torch.cat([torch.ones_like(mask[:, :1]).expand(-1, k), mask[:, :-1]], dim=1)
        logits = self.model(inputs_embeds=inputs, attention_mask=attention).logits[:, k - 1 :]
        labels = ids.masked_fill(mask == 0, IGNORE)
        value = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE)
        return LossOutput(value)

    # -- generation ----------------------------------------------------------------------------------------------
    def generate(self, n: int | None = None, *, prefix: Tensor | None = None, prompts: Sequence[str] | None = None,
                 input_ids: Sequence[Sequence[int]] | None = None, **settings: Any) -> Generated:
        """Generate with :func:`cl_lm.generate.generate` and the params' decoding settings.

        Args:
            n: rows to generate from ``<bos>`` alone (the LM's own, unconditioned text); not with the others.
            prefix: ``[B, K, D]`` prefix embeddings.
            prompts: B texts each row continues (after ``<bos>``; after the prefix when one is given).
            input_ids: B lists of token ids that follow the prefix, instead of ``prompts``.
            settings: :class:`~cl_lm.generate.Decoding` fields overriding the params (``max_new_tokens = 32`` unless
                given).

        Raises:
            ValueError: see :func:`cl_lm.generate.generate`; ``n`` with a prefix or prompts, or ``prompts`` with
                ``input_ids``.
        """
        tok = self._tokenizer
        if n is not None:
            if prefix is not None or prompts is not None or input_ids is not None:
                raise ValueError("give n (unconditioned rows) or a prefix / prompts, not both")
            if n < 1:
                raise ValueError(f"n must be >= 1, got {n}")
            input_ids = [[tok.bos_id] for _ in range(n)]
        elif prompts is not None:
            if input_ids is not None:
                raise ValueError("give prompts or input_ids, not both")
            for i, t in enumerate(prompts):
                if not isinstance(t, str):
                    raise ValueError(f"prompts[{i}]: expected a string, got {type(t).__name__}")
            input_ids = [[tok.bos_id] + ids for ids in tok.ids(prompts)]
        return generate(self.model, eos_id=tok.eos_id, pad_id=tok.pad_id, prefix=prefix, input_ids=input_ids,
                        settings=self.settings(**settings), tokenizer=tok)

    def _decode(self, embeddings: Tensor, *, max_length: int) -> list[str]:
        """The text after each row's K prefix embeddings (``embeddings [B, K * D]``), at most ``max_length``
        tokens, with the params' decoding settings."""
        return self.generate(prefix=self._prefix(embeddings), max_new_tokens=max_length).texts

    def usage_notes(self, role: str, source: str) -> list[str]:
        """What the run's model card says under "How to load" (``cl_core.modelcard.usage_notes``)."""
        return [f"The language model (`lm.gpt2`, its tokenizer inside the weights): `lm = cl_lm.load_lm(\"{source}\")`, "
                "then `lm.generate(prompts=[\"an emoji of\"], max_new_tokens=16).texts`, or "
                "`lm.generate(prefix=embeddings)` with `[B, K, D]` prefix embeddings (D = `lm.width`); "
                f"`cl_lm.export(\"{source}\", folder)` writes a `transformers` GPT-2 folder."]

    # -- loading ------------------------------------------------------------------------------------------------
    def resize_to_saved(self, saved: Mapping[str, Tensor]) -> None:
        """Take the saved tokenizer's size and embedding rows before a strict load (``cl_core.weights``): a run
        whose BPE was trained on its data loads without the data."""
        blob = saved.get("tokenizer_json")
        if blob is not None and blob.shape != self.tokenizer_json.shape:
            self.tokenizer_json = torch.empty(blob.shape, dtype=torch.uint8)
        rows = saved.get("model.transformer.wte.weight")
        if rows is not None and rows.shape[0] != self.model.config.vocab_size:
            self.model.resize_token_embeddings(int(rows.shape[0]))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        try:
            self._tokenizer = LMTokenizer.from_bytes(self.tokenizer_json.cpu().numpy())
        except ValueError as exc:
            raise ValueError(f"{prefix}tokenizer_json: {exc}") from None
        config = self.model.config
        config.bos_token_id, config.eos_token_id = self._tokenizer.bos_id, self._tokenizer.eos_id
        config.pad_token_id = self._tokenizer.pad_id
        if getattr(self.model, "generation_config", None) is not None:
            gen = self.model.generation_config
            gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = config.bos_token_id, config.eos_token_id, \
                config.pad_token_id


# -- the factory ------------------------------------------------------------------------------------------------


def training_texts(dataset: Any, field: str = "text") -> list[str]:
    """The texts of the ``field`` of a dataset's "train" split (its ``texts`` attribute when it has one).

    Raises:
        BuildError: no "train" split, or no such field of strings.
    """
    source = dataset.splits().get("train")
    if source is None:
        raise BuildError("the data has no \"train\" split to train the BPE on")
    texts = getattr(source, "texts", None)
    if texts is not None:
        return list(texts)
    if field not in source.fields:
        raise BuildError(f"tokenizer = \"bpe\" trains on the {field!r} field of the train split, and the data has "
                         f"fields {', '.join(source.fields)}; choose tokenizer = \"bytes\", \"minilm\" or a folder")
    out: list[str] = []
    for start in range(0, len(source), 4096):
        items = source.get(list(range(start, min(len(source), start + 4096))))[field]
        out += [t for t in items if isinstance(t, str)]
    return out


def make_tokenizer(params: GPT2Params, ctx: Any) -> LMTokenizer | None:
    """The tokenizer the params name, or None when it cannot be made here and the weights bring it (a load).

    Raises:
        BuildError: ``"bpe"`` without data to train on (and no weights to follow); a tokenizer folder that fails.
    """
    if params.tokenizer == "bytes":
        return bytes_tokenizer()
    if params.tokenizer == "minilm":
        return minilm_tokenizer()
    if params.tokenizer == "bpe":
        if ctx.dataset is None:
            if ctx.weights_follow:
                return None
            raise BuildError(f"{ctx.path}.tokenizer: \"bpe\" is trained on the [data] train split, and this build has "
                             "no data (load a trained run with cl_lm.load_lm(run), or choose \"bytes\" / \"minilm\")")
        try:
            return train_bpe(training_texts(ctx.dataset), params.vocab_size, max_chars=params.bpe_max_chars)
        except ValueError as exc:
            raise BuildError(f"{ctx.path}.tokenizer: {exc}") from None
    try:
        return folder_tokenizer(params.tokenizer)
    except BuildError:
        if ctx.weights_follow:
            return None
        raise


#: the params an ``init`` LM must share with the table that starts from it
ARCHITECTURE = ("layers", "width", "heads", "context")


def _from_init(params: GPT2Params, ctx: Any) -> GPT2Decoder:
    """The LM of the ``init`` run with this table's params (dropout, decoding, trainable layers), or a stand-in
    when the weights follow (a load replaces it; the ``init`` run need not exist where a run is loaded).

    Raises:
        BuildError: the run cannot be loaded or holds no ``lm.gpt2``; its architecture differs from the table's.
    """
    from cl_core.api import ClError

    from .load import load_lm

    if ctx.weights_follow:
        return GPT2Decoder(params, bytes_tokenizer(), rows=params.vocab_size)
    where = f"{ctx.path or 'decoder'}.init"
    assert params.init is not None
    from .params import INIT_SOURCE

    try:
        INIT_SOURCE(None, None, params.init)
        start = load_lm(params.init)
    except (ClError, ValueError) as exc:
        raise BuildError(f"{where}: {exc}") from None
    differ = [f"{k} = {getattr(start.params, k)} (the table says {getattr(params, k)})" for k in ARCHITECTURE
              if getattr(start.params, k) != getattr(params, k)]
    if differ:
        raise BuildError(f"{where}: {params.init} has another architecture: " + "; ".join(differ))
    lm = GPT2Decoder(params, start.tokenizer, rows=start.model.config.vocab_size)
    lm.model.load_state_dict(start.model.state_dict())
    return lm


def build_gpt2(params: GPT2Params, ctx: Any) -> GPT2Decoder:
    """Factory of ``lm.gpt2``: the tokenizer (trained on the data's train split for ``"bpe"``), then the model
    (random initialisation from the global torch RNG; a load replaces both with the saved ones); with ``init``,
    the weights and tokenizer of that run.

    Raises:
        BuildError: see :func:`make_tokenizer` and :func:`_from_init`.
    """
    if params.init is not None:
        return _from_init(params, ctx)
    tokenizer = make_tokenizer(params, ctx)
    if tokenizer is None:  # a load: a stand-in of the right size; the saved tokenizer replaces it
        return GPT2Decoder(params, bytes_tokenizer(), rows=params.vocab_size)
    return GPT2Decoder(params, tokenizer)
