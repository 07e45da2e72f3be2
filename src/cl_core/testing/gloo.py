"""CPU process groups (gloo) for tests that compare N processes with one.

A test module doubles as the worker script: the test runs it with :func:`run_script` (a fresh interpreter, so
no test state leaks into the workers), and its ``__main__`` block calls :func:`spawn` with a module-level
function, which each process runs inside an initialised group on a free local port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_group(rank: int, fn: Callable[..., None], world: int, port: int, args: tuple[Any, ...]) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
        # Tear down only once every rank is done: rank 0 still writes the run directory after training, and a
        # gloo group destroyed on one rank while its peer is busy aborted that rank once in CI ("terminate
        # called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable[..., None], world: int, *args: Any) -> None:
    """Run ``fn(rank, world, *args)`` in ``world`` spawned processes joined in a gloo group (one thread each);
    raises when any of them fails. ``fn`` must be a module-level function (it is pickled by name)."""
    import torch.multiprocessing as mp

    mp.spawn(_in_group, args=(fn, world, free_port(), args), nprocs=world, join=True)


def run_script(script: str | Path, *args: Any, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python script *args`` with one OpenMP thread per process; asserts that it succeeded (the end of its
    stderr in the message)."""
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc
