"""Time and peak memory of CLIP-style contrastive losses, forward + backward, in one run.

    python benchmarks/losses.py                      # N = 1,024 ... 65,536, d = 512, 2 threads
    python benchmarks/losses.py --sizes 1024,4096 --pml-sizes 512 --threads 2

Rows (each measured in a fresh subprocess, so peak memory is that of one forward + backward):

* ``cl direct`` / ``cl tiled`` / ``cl auto``: ``core.clip`` with ``core.cosine`` (``implementation=...``);
* ``naive``: the open_clip algorithm written out here (normalise, ``s * img @ txt.T`` and ``s * txt @ img.T``
  as two matmuls, two cross-entropies, average) -- the full-matrix reference;
* ``pml ntxent`` / ``pml supcon`` vs ``cl supcon``: NT-Xent / SupCon on N embeddings (N/2 pairs), where
  pytorch-metric-learning is installed and the run fits (``--pml-sizes``).

Peak memory: on CPU the growth of the process's resident set (``VmHWM`` reset after the inputs are built);
on CUDA ``max_memory_allocated``. A row whose estimated memory exceeds ``--memory-cap-gb`` is not run and
shows its estimate instead. GFLOP/s counts the 6 N^2 d flops of the three matmuls any exact
forward + backward needs ("useful"); the tiled form executes 8 N^2 d (it recomputes the scores), shown as
"exec". Both are compared with a plain ``[4096, d] @ [d, 4096]`` matmul measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from cl_core._builtin.params import TILED_ABOVE  # torch-free

CLIP_METHODS = ("cl direct", "cl tiled", "cl auto", "naive")
PML_METHODS = ("cl supcon", "pml ntxent", "pml supcon")


# -- what one child measures ---------------------------------------------------------------------------------


def _rss_kb() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, value = line.split(":", 1)
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def _naive_clip(q, k, scale):
    """open_clip's ClipLoss on normalised features (two logit matmuls, two cross-entropies)."""
    import torch
    import torch.nn.functional as F

    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    logits_q = scale * q @ k.t()
    logits_k = scale * k @ q.t()
    labels = torch.arange(q.shape[0], device=q.device)
    return (F.cross_entropy(logits_q, labels) + F.cross_entropy(logits_k, labels)) / 2


def _step(method: str, n: int, d: int, device: str):
    """Build inputs; return a closure running one forward + backward and returning the loss."""
    import torch

    from cl_core._builtin.losses import ClipLoss
    from cl_core._builtin.scorers import CosineScorer
    from cl_core._builtin.supcon import SupConLoss
    from cl_core.types import Targets

    g = torch.Generator().manual_seed(0)
    q = torch.randn(n, d, generator=g).to(device).requires_grad_()
    k = (q.detach() + torch.randn(n, d, generator=g).to(device)).requires_grad_()
    if method in CLIP_METHODS:
        scorer = CosineScorer(temperature=0.07, learn_temperature=True).to(device)
        targets = Targets(positive=torch.arange(n, device=device))
        if method == "naive":
            return lambda: _naive_clip(q, k, scorer.scale)
        loss = ClipLoss(implementation=method.split()[1])
        return lambda: loss.compute(q, k, scorer, targets).value
    half = n // 2
    e = torch.randn(n, d, generator=g).to(device).requires_grad_()
    labels = torch.cat([torch.arange(half)] * 2).to(device)
    if method == "cl supcon":
        scorer = CosineScorer(temperature=0.07, learn_temperature=False).to(device)
        loss = SupConLoss(views="joint")
        targets = Targets(positive=torch.arange(half, device=device))
        return lambda: loss.compute(e[:half], e[half:], scorer, targets).value
    from pytorch_metric_learning import losses as pml

    loss = pml.NTXentLoss(temperature=0.07) if method == "pml ntxent" else pml.SupConLoss(temperature=0.07)
    return lambda: loss(e, labels)


def child(method: str, n: int, d: int, device: str, reps: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    if method == "matmul":
        a, b = torch.randn(4096, d, device=device), torch.randn(d, 4096, device=device)
        best = float("inf")
        for _ in range(reps + 2):
            _sync(device)
            t = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - t)
        return {"gflops": 2 * 4096 * 4096 * d / best / 1e9}
    run = _step(method, n, d, device)
    times, value, peak = [], None, 0
    for rep in range(reps + (1 if reps > 1 else 0)):  # small sizes: the first run is a warm-up, not timed
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            base = _rss_kb()["VmRSS"]
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        _sync(device)
        t = time.perf_counter()
        loss = run()
        loss.backward()
        _sync(device)
        if rep > 0 or reps == 1:
            times.append(time.perf_counter() - t)
        value = float(loss.detach())
        # memory of the first run: later runs reuse what the allocator kept, so they look free
        if rep == 0:
            peak = torch.cuda.max_memory_allocated() if device == "cuda" else (_rss_kb()["VmHWM"] - base) * 1024
        del loss
    return {"seconds": min(times), "peak_bytes": peak, "loss": value}


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# -- the parent: plan, run children, print the table ------------------------------------------------------


def estimate_bytes(method: str, n: int, d: int) -> float:
    """Rough peak of one forward + backward (float32), to skip runs that cannot fit."""
    inputs = 4 * n * d * 8
    if method == "cl tiled" or (method == "cl auto" and n * n > TILED_ABOVE):
        return inputs + 3 * 64 * 2**20
    if method == "naive":
        return inputs + 7 * 4 * n * n
    if method == "cl direct" or method == "cl auto":
        return inputs + 5 * 4 * n * n
    if method == "cl supcon":
        return inputs + 8 * 4 * n * n
    if method == "pml supcon":
        return inputs + 10 * 4 * n * n
    return inputs + 68e9 * (n / 4096) ** 3  # pml ntxent: ~68 GB at N = 2,048 pairs (4,096 embeddings)


def measure(method: str, n: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child", method, str(n), "--dim", str(args.dim), "--device", args.device,
           "--reps", str(args.reps if n <= 4096 else 1), "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"> {args.timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:60]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_bytes(b: float) -> str:
    return f"{b / 2**30:.2f} GB" if b >= 2**30 else f"{b / 2**20:.0f} MB"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1024,2048,4096,8192,16384,32768,65536")
    parser.add_argument("--pml-sizes", default="512", help="embeddings per batch for the NT-Xent/SupCon rows")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 by default: on a shared machine OpenMP threads stall each other)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (best time, after a warm-up) for N <= 4096")
    parser.add_argument("--memory-cap-gb", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        method, n = args.child
        print(json.dumps(child(method, int(n), args.dim, args.device, args.reps, args.threads)))
        return

    rate = measure("matmul", 0, args)["gflops"]
    print(f"device {args.device}, {args.threads} threads, d = {args.dim}; plain matmul [4096,{args.dim}]@"
          f"[{args.dim},4096]: {rate:.1f} GFLOP/s\n")
    header = f"{'N':>7}  {'method':<10} {'time (s)':>9} {'peak mem':>10} {'vs naive':>9} " \
             f"{'GFLOP/s':>8} {'useful %':>9} {'exec %':>7}  loss"
    print(header)
    print("-" * len(header))
    cap = args.memory_cap_gb * 2**30
    for n in [int(x) for x in args.sizes.split(",") if x]:
        naive_time = None
        measured = {}
        for method in ("naive", "cl direct", "cl tiled", "cl auto"):
            if method == "cl auto":  # auto runs one of the two forms: reuse its measurement
                picked = "cl tiled" if n * n > TILED_ABOVE else "cl direct"
                _row(method, n, args, rate, cap, naive_time, reuse=measured.get(picked), note=f"(= {picked})")
                continue
            measured[method] = _row(method, n, args, rate, cap, naive_time)
            if method == "naive":
                naive_time = (measured[method] or {}).get("seconds")
        print()
    if not args.pml_sizes:
        return
    if not _has_pml():
        print("pytorch-metric-learning is not installed: NT-Xent/SupCon comparison rows skipped")
        return
    print("NT-Xent / SupCon on N embeddings (N/2 positive pairs), temperature 0.07:")
    print(header)
    print("-" * len(header))
    for n in [int(x) for x in args.pml_sizes.split(",") if x]:
        rows = {method: _row(method, n, args, rate, cap, None) for method in PML_METHODS}
        ours = (rows["cl supcon"] or {}).get("seconds")
        for other in ("pml ntxent", "pml supcon"):
            theirs = (rows[other] or {}).get("seconds")
            if ours and theirs:
                print(f"         cl supcon is {theirs / ours:.1f}x faster than {other} at N = {n}")
        print()


def _row(method: str, n: int, args, rate: float, cap: float, naive_time: float | None, *, reuse=None,
         note: str = "") -> dict | None:
    """Measure (or reuse) one row and print it; returns the measurement."""
    estimate = estimate_bytes(method, n, args.dim)
    if reuse is None and estimate > cap:
        print(f"{n:>7}  {method:<10} {'skipped':>9} {'~' + _fmt_bytes(estimate):>10}  (estimated, over "
              f"--memory-cap-gb {args.memory_cap_gb:g})", flush=True)
        return None
    result = reuse or measure(method, n, args)
    if "error" in result:
        print(f"{n:>7}  {method:<10} {'error':>9}  {result['error']}", flush=True)
        return None
    t = result["seconds"]
    useful = 6 * n * n * args.dim / t / 1e9 if method in CLIP_METHODS else float("nan")
    tiled = method == "cl tiled" or (method == "cl auto" and n * n > TILED_ABOVE)
    executed = useful * (8 / 6 if tiled else 1)
    ratio = f"{t / naive_time:.2f}x" if naive_time else "-"
    flops = f"{useful:>8.1f} {100 * useful / rate:>8.0f}% {100 * executed / rate:>6.0f}%" \
        if method in CLIP_METHODS else f"{'':>8} {'':>9} {'':>7}"
    print(f"{n:>7}  {method:<10} {t:>9.3f} {_fmt_bytes(result['peak_bytes']):>10} {ratio:>9} {flops}  "
          f"{result['loss']:.5f} {note}", flush=True)
    return result


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _has_pml() -> bool:
    import importlib.util

    return importlib.util.find_spec("pytorch_metric_learning") is not None


if __name__ == "__main__":
    main()
