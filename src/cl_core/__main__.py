"""``python -m cl_core`` is the ``cl`` command."""

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="cl")
