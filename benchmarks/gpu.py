"""The GPU figures, in one run on a lent card (<= 8 minutes on an H100/H200): the GPU tests,
then each hot path against the card's own measured ceilings and against KeOps where it applies.

It installs nothing. On a lent machine (no network there, and the project's ``make setup``
needs one) it runs on that machine's own Python, which holds torch, numpy, scipy,
scikit-learn, pandas and pyarrow; gapscope itself is imported from this checkout through a
path shim (``gapscope`` is a namespace package: a temporary folder holds
``gapscope/helpers`` and ``gapscope/widgets`` as links to the checkout's folders), so neither
``pip install`` nor the network is needed. pykeops is used when it can be imported (carry its
wheels, see the device tool's README: ``pykeops`` and ``keopscore`` are pure-Python wheels
that compile with the machine's nvcc); otherwise its rows say "not installed".

What it measures, each timed with CUDA events / synchronise after warm-ups, median of
``--repeats``:

- ceilings on this card: the float32 ``exp`` rate (elements/s, one 2^28-element pass), the
  float32 GEMM rate (TF32 off and on) and the device-to-device copy bandwidth;
- exact Gaussian KDE, m = n = 10^6 queries x references at d = 16 (``GaussianKDE``), as
  pairs/s against the exp ceiling (one exp per pair) and against KeOps' ``logsumexp``;
- ensemble scoring of 10^6 items (5 MLPs 64-256-256-10, ``score_pool``) against the GEMM
  ceiling (the MLPs' flops per item);
- k-center, 1,000 picks from 10^6 x 64 (``selection.kcenter``) against the copy bandwidth
  (each pick reads the pool once);
- one whole round at 10^6 x 64 streamed from an Arrow file (``scale.stream_round``),
  training excluded, per step.

It prints a Markdown report and, with ``--write``, appends it to
``benchmarks/RESULTS.d/gpu.md`` and one row per figure to ``benchmarks/RESULTS.md``, with the
date and the device's name. ``--dry-run`` runs every path at toy sizes on whatever device
there is (the CPU here), which ``tests/test_gpu_script.py`` does in ``make test`` so the
script cannot rot between lent cards.

    python3 benchmarks/gpu.py --write              # on the lent machine, from the repo root
    python benchmarks/gpu.py --dry-run             # anywhere
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _shim() -> None:
    """Make ``import gapscope.helpers`` work from this checkout without installing it."""
    try:
        import gapscope.helpers  # noqa: F401

        return
    except ImportError:
        pass
    tmp = Path(tempfile.mkdtemp(prefix="gapscope-shim-"))
    (tmp / "gapscope").mkdir()
    for sub in ("helpers", "widgets", "notebooks"):
        (tmp / "gapscope" / sub).symlink_to(ROOT / sub)
    sys.path.insert(0, str(tmp))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")])


def _timed(fn, *, repeats: int, sync) -> float:
    fn()  # warm-up (kernels, allocator, cuBLAS heuristics)
    sync()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="toy sizes on any device (a check that the script runs)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS.md and RESULTS.d/gpu.md")
    ap.add_argument("--no-tests", action="store_true", help="skip the GPU tests")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    _shim()
    import numpy as np
    import torch

    from gapscope.helpers.density import GaussianKDE
    from gapscope.helpers.device import resolve_device
    from gapscope.helpers.models import Ensemble
    from gapscope.helpers.scale import stream_round, write_pool_file
    from gapscope.helpers.scoring import score_pool
    from gapscope.helpers.selection import kcenter

    dev = resolve_device(a.device)
    cuda = dev.type == "cuda"
    name = torch.cuda.get_device_name(dev) if cuda else f"CPU ({os.cpu_count()} cores)"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    small = a.dry_run
    N = 20_000 if small else 1_000_000
    KDE_N = 4_000 if small else 1_000_000
    lines: list[str] = []
    rows: list[tuple[str, str, str]] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    t_start = time.perf_counter()
    say(f"# GPU figures, {time.strftime('%Y-%m-%d %H:%M')}, {name}, torch {torch.__version__}" + (" (dry run)" if small else ""))

    # ---- the GPU tests
    if not a.no_tests and not small:
        t = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "--continue-on-collection-errors",
             "tests", "--ignore=tests/test_browser_lab.py"],
            cwd=ROOT, capture_output=True, text=True, timeout=240,
        )
        tail = (p.stdout.strip().splitlines() or ["(no output)"])[-1]
        say(f"\nGPU tests (`pytest -m gpu tests`): exit {p.returncode}, {tail} ({time.perf_counter() - t:.0f} s)")
        if p.returncode:
            say("```\n" + p.stdout[-4000:] + p.stderr[-2000:] + "\n```")

    # ---- ceilings
    x = torch.rand(2**22 if small else 2**28, device=dev)
    t_exp = _timed(lambda: torch.exp(x), repeats=a.repeats, sync=sync)
    exp_rate = x.numel() / t_exp
    y = torch.empty_like(x)
    t_copy = _timed(lambda: y.copy_(x), repeats=a.repeats, sync=sync)
    copy_bw = 2 * x.numel() * 4 / t_copy
    x = y = None  # free the card's memory
    s = 1024 if small else 8192
    A, B = torch.randn(s, s, device=dev), torch.randn(s, s, device=dev)
    gemm = {}
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        gemm[tf32] = 2 * s**3 / _timed(lambda: A @ B, repeats=a.repeats, sync=sync)
    torch.backends.cuda.matmul.allow_tf32 = False
    A = B = None
    say("\n## Ceilings measured on this card")
    say(f"- float32 exp: {exp_rate / 1e9:.1f} G/s; device copy: {copy_bw / 1e9:.0f} GB/s (read + write); "
        f"float32 GEMM: {gemm[False] / 1e12:.1f} TFLOP/s (TF32 off), {gemm[True] / 1e12:.1f} TFLOP/s (TF32 on)")

    # ---- exact KDE
    g = torch.Generator(device=dev).manual_seed(0)
    R = torch.randn(KDE_N, 16, device=dev, generator=g)
    Q = torch.randn(KDE_N, 16, device=dev, generator=g)
    kde = GaussianKDE(bandwidth=0.5).fit(R)
    t_kde = _timed(lambda: kde.score_samples(Q), repeats=a.repeats, sync=sync)
    pairs = KDE_N * KDE_N / t_kde
    say(f"\n## Exact Gaussian KDE, {KDE_N:,} x {KDE_N:,} at d = 16")
    say(f"- gapscope: {t_kde:.3f} s = {pairs / 1e9:.1f} G pairs/s = {pairs / exp_rate:.0%} of the exp ceiling (target < 1 s on H100/H200)")
    rows.append((f"exact KDE {KDE_N:,}^2, d = 16", f"{t_kde:.3f} s", f"{pairs / exp_rate:.0%} of measured exp rate"))
    try:
        from pykeops.torch import LazyTensor

        def keops():
            qi = LazyTensor((Q / 0.5)[:, None, :])
            rj = LazyTensor((R / 0.5)[None, :, :])
            return (-0.5 * ((qi - rj) ** 2).sum(-1)).logsumexp(dim=1)

        t_k = _timed(keops, repeats=a.repeats, sync=sync)
        ref = kde.score_samples(Q[:1000])
        mine = keops()[:1000, 0] - np.log(KDE_N) - 8 * np.log(2 * np.pi * 0.25)
        err = float((ref - mine).abs().max())
        say(f"- KeOps logsumexp on the same card: {t_k:.3f} s; KeOps / gapscope = {t_k / t_kde:.2f} (max |dlog p| {err:.2g})")
        rows.append(("exact KDE vs KeOps", f"{t_k / t_kde:.2f}x", "KeOps time / gapscope time"))
    except ImportError:
        say("- KeOps: not installed on this machine (carry pykeops + keopscore wheels to compare)")
    R = Q = kde = None

    # ---- ensemble scoring
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 64)).astype(np.float32)
    y_ = rng.integers(0, 10, N)
    ens = Ensemble(n_members=5, hidden=(256, 256), epochs=1, n_classes=10, device=dev, random_state=0).fit(X[:2000], y_[:2000])
    Xd = torch.from_numpy(X).to(dev)
    t_sc = _timed(lambda: score_pool(ens, Xd, scores=("ensemble_uncertainty",)), repeats=a.repeats, sync=sync)
    flops = 2 * 5 * (64 * 256 + 256 * 256 + 256 * 10) * N
    say(f"\n## Ensemble scoring, {N:,} items (5 MLPs 64-256-256-10)")
    say(f"- score_pool: {t_sc * 1e3:.1f} ms = {N / t_sc / 1e6:.1f} M items/s = {flops / t_sc / gemm[False]:.0%} of the float32 GEMM ceiling (target < 50 ms)")
    rows.append((f"ensemble scoring {N:,}", f"{t_sc * 1e3:.1f} ms", f"{flops / t_sc / gemm[False]:.0%} of measured fp32 GEMM"))

    # ---- k-center
    picks = 50 if small else 1000
    t_kc = _timed(lambda: kcenter(picks, embeddings=Xd, random_state=0), repeats=max(1, a.repeats - 1), sync=sync)
    bw = picks * N * 64 * 4 / t_kc
    say(f"\n## k-center, {picks:,} picks from {N:,} x 64")
    say(f"- kcenter: {t_kc:.3f} s; {bw / 1e9:.0f} GB/s of pool reads = {bw / copy_bw:.0%} of the copy bandwidth")
    rows.append((f"k-center {picks} of {N:,} x 64", f"{t_kc:.3f} s", f"{bw / copy_bw:.0%} of measured copy bandwidth"))
    Xd = None

    # ---- a whole round
    with tempfile.TemporaryDirectory() as tmp:
        pf = write_pool_file(Path(tmp) / "pool.arrow", X)
        lab = np.arange(0, N, N // 2000)
        ens2 = Ensemble(n_members=5, epochs=1, n_classes=10, device=dev, random_state=0).fit(X[lab], y_[lab])
        stream_round(pf, ens2, budget=100, labeled_ids=lab, random_state=0)  # warm-up
        best = None
        for _ in range(a.repeats):
            t = time.perf_counter()
            r = stream_round(pf, ens2, budget=1000 if not small else 100, labeled_ids=lab, random_state=0)
            sync()
            wall = time.perf_counter() - t
            if best is None or wall < best[0]:
                best = (wall, r.timings)
    assert best is not None
    say(f"\n## One round, {N:,} x 64 streamed from an Arrow file (training excluded), best of {a.repeats}")
    say(f"- total {best[0]:.2f} s (target < 2 s): " + ", ".join(f"{k} {v:.3f} s" for k, v in best[1].items()))
    rows.append((f"round {N:,} x 64", f"{best[0]:.2f} s", ", ".join(f"{k} {v:.2f}" for k, v in best[1].items())))
    say(f"\n(whole script {time.perf_counter() - t_start:.0f} s)")

    if a.write:
        day = time.strftime("%Y-%m-%d")
        with open(ROOT / "benchmarks" / "RESULTS.d" / "gpu.md", "a") as f:
            f.write("\n" + "\n".join(lines) + "\n\nCommand: `python3 benchmarks/gpu.py --write`\n")
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(f"\n**GPU, {day}, {name}** (`benchmarks/gpu.py`, details in `RESULTS.d/gpu.md`)\n\n")
            f.write("| what | time | against the ceiling |\n| --- | ---: | --- |\n")
            for w, t_, c in rows:
                f.write(f"| {w} | {t_} | {c} |\n")


if __name__ == "__main__":
    main()
