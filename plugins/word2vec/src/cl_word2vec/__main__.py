"""``python -m cl_word2vec export RUN_DIR OUT [--text]``: write a run's vectors in the word2vec format."""

from __future__ import annotations

import argparse
import sys

from cl_core.api import ClError

from . import export


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cl_word2vec")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write a run's word vectors in the word2vec C text/binary format")
    ex.add_argument("run_dir")
    ex.add_argument("out")
    ex.add_argument("--text", action="store_true", help="text format (default: binary)")
    args = parser.parse_args(argv)
    try:
        path = export(args.run_dir, args.out, binary=not args.text)
    except (ClError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
