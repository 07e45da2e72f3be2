"""Batched decoding of cl_lm.generate against transformers' generate, for the same model, in the same run.

1,000 prefixes are decoded greedily and with beam search (3 beams) by

* ``cl_lm``: :func:`cl_lm.generate.generate`, batched (256 rows a forward pass, finished rows dropped);
* ``transformers loop``: a plain loop calling ``model.generate`` once per prefix (what a captioner without a
  batched decoder does);
* ``transformers batched``: ``model.generate`` on the same batches of 256.

and the script prints the wall time of each and the ratios, and checks that the three give the same tokens.

The model is the LM of a run (``--run runs/lm-english-...``) or, without one, a random ``lm.gpt2`` of the
lm-english size. Each prefix is ``[K = 2, D]``: the token embeddings of ``<eot>`` and of the first token of a
text (held-out emoji captions of the run's data when it has them, else words of a fixed list), so generations
have different lengths as real ones do.

    python benchmarks/lm_decoding.py --run runs/lm-english-20261202-190000
    python benchmarks/lm_decoding.py --rows 200 --loop-rows 50     # a quick look
    python benchmarks/lm_decoding.py --run RUN --methods beam --loop-rows 250   # the loop on 250, scaled
"""

from __future__ import annotations

import argparse
import time

import torch

WORDS = ["grinning", "red", "dog", "flag", "smiling", "woman", "man", "cat", "heart", "face", "hand", "star",
         "blue", "the", "a", "house", "person", "light", "green", "old"]


def _model(args: argparse.Namespace):
    from cl_lm.model import GPT2Decoder
    from cl_lm.params import GPT2Params
    from cl_lm.tokenizer import bytes_tokenizer

    if args.run:
        import cl_lm

        lm = cl_lm.load_lm(args.run)
        texts: list[str] = []
        try:
            from cl_core.api import from_pretrained

            data = from_pretrained(args.run, with_data=True).dataset
            split = data.splits().get("heldout-captions") or data.splits().get("heldout")
            texts = split.get(list(range(len(split))))["text"] if split is not None else []
        except Exception as exc:  # the data may be unavailable: fall back to fixed words
            print(f"(no held-out texts from the run's data: {type(exc).__name__}; using fixed words)")
        return lm, texts
    torch.manual_seed(0)
    lm = GPT2Decoder(GPT2Params(tokenizer="bytes", context=128, layers=4, width=256, heads=4), bytes_tokenizer())
    return lm.eval(), []


def _prefixes(lm, texts: list[str], rows: int) -> torch.Tensor:
    tok = lm.tokenizer
    texts = (texts or WORDS) * (rows // max(1, len(texts or WORDS)) + 1)
    firsts = [ids[0] if ids else tok.eos_id for ids in tok.ids(texts[:rows])]
    ids = torch.tensor([[tok.bos_id, f] for f in firsts])
    with torch.no_grad():
        return lm.embed_tokens(ids).detach()


def _hf(model, prefix: torch.Tensor, settings, eos: int, pad: int) -> torch.Tensor:
    return model.generate(inputs_embeds=prefix, attention_mask=torch.ones(prefix.shape[:2], dtype=torch.long),
                          max_new_tokens=settings.max_new_tokens, do_sample=False, num_beams=settings.beam_size
                          if settings.method == "beam" else 1, length_penalty=settings.length_penalty,
                          eos_token_id=eos, pad_token_id=pad)


def _pad(rows: list[torch.Tensor], pad: int) -> torch.Tensor:
    width = max(r.shape[-1] for r in rows)
    return torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[-1]), value=pad) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an lm-english run (default: a random lm.gpt2 of the same size)")
    parser.add_argument("--rows", type=int, default=1000, help="prefixes to decode")
    parser.add_argument("--loop-rows", type=int, default=None,
                        help="prefixes the per-prefix transformers loop decodes (its time is scaled to --rows)")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="greedy,beam", help="comma-separated: greedy, beam")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import transformers

    from cl_lm.generate import Decoding, generate

    lm, texts = _model(args)
    model, tok = lm.model.eval(), lm.tokenizer
    prefix = _prefixes(lm, texts, args.rows)
    loop_rows = min(args.rows, args.loop_rows or args.rows)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, width {lm.width}, "
          f"{model.config.n_layer} layers, vocabulary {model.config.vocab_size}; {args.rows} prefixes [K = 2, D], "
          f"{args.max_new_tokens} new tokens at most; torch {torch.__version__}, transformers "
          f"{transformers.__version__}, {args.threads} threads")
    print(f"{'method':<8} {'cl_lm s':>8} {'hf loop s':>10} {'speed-up':>9} {'hf batched s':>13} {'speed-up':>9} "
          f"{'same as loop':>13} {'same as batched':>16}")
    for method in args.methods.split(","):
        settings = Decoding(method=method, beam_size=args.beam_size, max_new_tokens=args.max_new_tokens,
                            batch_size=args.batch_size)
        with torch.no_grad():
            start = time.perf_counter()
            ours = generate(model, eos_id=tok.eos_id, pad_id=tok.pad_id, prefix=prefix, settings=settings)
            t_ours = time.perf_counter() - start

            chunk = max(1, args.batch_size // (args.beam_size if method == "beam" else 1))
            start = time.perf_counter()
            batched = _pad([_hf(model, prefix[i : i + chunk], settings, tok.eos_id, tok.pad_id)
                            for i in range(0, args.rows, chunk)], tok.pad_id)
            t_batched = time.perf_counter() - start

            start = time.perf_counter()
            loop = [_hf(model, prefix[i : i + 1], settings, tok.eos_id, tok.pad_id) for i in range(loop_rows)]
            t_loop = (time.perf_counter() - start) * args.rows / loop_rows
        loop_ids = _pad(loop, tok.pad_id)

        def same(theirs: torch.Tensor, n: int) -> float:
            a, b = ours.sequences[:n], theirs[:n]
            width = max(a.shape[1], b.shape[1])
            a = torch.nn.functional.pad(a, (0, width - a.shape[1]), value=tok.pad_id)
            b = torch.nn.functional.pad(b, (0, width - b.shape[1]), value=tok.pad_id)
            return float((a == b).all(1).float().mean())

        print(f"{method:<8} {t_ours:>8.2f} {t_loop:>10.2f} {t_loop / t_ours:>8.1f}x {t_batched:>13.2f} "
              f"{t_batched / t_ours:>8.2f}x {same(loop_ids, loop_rows):>13.3f} {same(batched, args.rows):>16.3f}")
    if loop_rows < args.rows:
        print(f"(the loop decoded {loop_rows} prefixes; its time is scaled to {args.rows})")
    sample = generate(model, eos_id=tok.eos_id, pad_id=tok.pad_id, prefix=prefix[:5],
                      settings=Decoding(max_new_tokens=args.max_new_tokens), tokenizer=tok)
    for text, first in zip(sample.texts, tok.decode_batch([[int(i)] for i in _first_ids(lm, texts, 5)])):
        print(f"  {first!r} -> {text!r}")


def _first_ids(lm, texts: list[str], n: int) -> list[int]:
    tok = lm.tokenizer
    texts = (texts or WORDS)[:n]
    return [ids[0] if ids else tok.eos_id for ids in tok.ids(texts)]


if __name__ == "__main__":
    main()
