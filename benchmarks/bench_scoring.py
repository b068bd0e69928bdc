"""Ensemble scoring throughput: per-member loop vs one batched vmap pass vs the sgemm roofline.

K = 5 MLPs 64-256-256-10 score a pool of 1M x 64 float32 rows (``--quick``: 100k). For each
batch size we time, on the same device and in the same run:

- ``loop``: the plain per-member loop a user would write (``Ensemble(batched=False)``);
- ``vmap``: gapscope's batched pass (``torch.func.stack_module_state`` + ``vmap``);
- ``bmm``: the same network written by hand as stacked ``baddbmm`` calls (a second
  batched baseline);
- ``score_pool``: the end-to-end streaming call (probabilities + predictive entropy + BALD)
  with its automatic chunk size;

and compare each with the roofline: the measured sgemm rate (``torch.mm`` of
(8192 x 256) @ (256 x 256) float32) divided by the FLOPs one sample costs
(5 members x 2 x (64*256 + 256*256 + 256*10) = 844,800 FLOPs).

Run: ``python benchmarks/bench_scoring.py [--quick] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from gapscope.helpers.models import Ensemble
from gapscope.helpers.scoring import score_pool

SIZES = (64, 256, 256, 10)
K = 5


def flops_per_sample() -> int:
    layers = list(zip(SIZES[:-1], SIZES[1:], strict=True))
    return K * sum(2 * a * b for a, b in layers)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def once(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def sgemm_flops(device: torch.device) -> float:
    """FLOP/s of one timed burst of 20 torch.mm calls (8192 x 256) @ (256 x 256)."""
    a = torch.randn(8192, 256, device=device)
    b = torch.randn(256, 256, device=device)
    out = torch.empty(8192, 256, device=device)
    inner = 20

    def run():
        for _ in range(inner):
            torch.mm(a, b, out=out)

    run()  # warm-up
    return inner * 2 * 8192 * 256 * 256 / once(run, device)


def build_ensemble(device: torch.device) -> Ensemble:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], size=512)
    ens = Ensemble(
        "mlp",
        K,
        n_classes=SIZES[-1],
        hidden=SIZES[1:-1],
        epochs=1,
        device=str(device),
        random_state=0,
    )
    return ens.fit(X, y)


def bmm_forward(ens: Ensemble):
    """The same ensemble written by hand with stacked weights and baddbmm."""
    Ws, bs = [], []
    for li in range(len(SIZES) - 1):
        lin = [m.body[2 * li] if li < len(SIZES) - 2 else m.head for m in ens.members_]
        Ws.append(torch.stack([layer.weight.detach().T for layer in lin]))  # (K, in, out)
        bs.append(torch.stack([layer.bias.detach() for layer in lin])[:, None, :])  # (K, 1, out)

    def forward(x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(K, -1, -1)
        for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
            h = torch.baddbmm(b, h, W)
            if i < len(Ws) - 1:
                h = torch.relu(h)
        return torch.softmax(h, -1)

    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k rows instead of 1M")
    parser.add_argument("--n", type=int, default=None, help="pool rows (overrides --quick)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from gapscope.helpers.device import chunk_rows, resolve_device

    device = resolve_device(args.device)
    n = args.n or (100_000 if args.quick else 1_000_000)
    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"cpus={os.cpu_count()} n={n} K={K} MLP={'-'.join(map(str, SIZES))}"
    )
    X = torch.randn(n, SIZES[0], generator=torch.Generator().manual_seed(0)).to(device)
    ens = build_ensemble(device)
    fps = flops_per_sample()
    fwd = bmm_forward(ens)
    with torch.inference_mode():
        ref = ens.predict_proba(X[:2048], batched=False)
        err = (fwd(X[:2048]) - ref).abs().max().item()
        err_v = (ens.predict_proba(X[:2048], batched=True) - ref).abs().max().item()
    print(f"max |p_vmap - p_loop| = {err_v:.2e}, max |p_bmm - p_loop| = {err:.2e}")

    def runner(kind, bs, rows=n):
        if kind == "sgemm":
            return None
        if kind == "bmm":

            def go():
                with torch.inference_mode():
                    for s in range(0, rows, bs):
                        fwd(X[s : min(s + bs, rows)])

            return go
        return lambda: ens.predict_proba(X[:rows], batch_size=bs, batched=(kind == "vmap"))

    # The machine may be shared: implementations are timed round-robin (each round runs
    # sgemm, loop, vmap, bmm back to back) and the median over rounds is reported, so a
    # burst of load from elsewhere hits all of them alike.
    kinds = ("loop", "vmap", "bmm")
    print(
        f"{'batch':>7} {'sgemm GF/s':>10} {'roof/s':>9} {'loop/s':>9} {'vmap/s':>9} {'bmm/s':>9}"
        "  vmap/loop  bmm/loop  loop/roof  vmap/roof  bmm/roof"
    )
    best: dict[str, tuple[float, float, int]] = {}
    for bs in args.batch_sizes:
        for kind in kinds:  # warm-up on a few batches
            runner(kind, bs, rows=min(n, 2 * bs))()
        t = {k: [] for k in ("sgemm", *kinds)}
        for _ in range(args.repeats):
            t["sgemm"].append(sgemm_flops(device))
            for kind in kinds:
                t[kind].append(n / once(runner(kind, bs), device))
        med = {k: statistics.median(v) for k, v in t.items()}
        roof = med["sgemm"] / fps
        for kind in kinds:
            if med[kind] > best.get(kind, (0.0, 0.0, 0))[0]:
                best[kind] = (med[kind], roof, bs)
        print(
            f"{bs:>7} {med['sgemm'] / 1e9:>10.1f} {roof:>9,.0f} {med['loop']:>9,.0f} {med['vmap']:>9,.0f} "
            f"{med['bmm']:>9,.0f}  {med['vmap'] / med['loop']:>9.2f} {med['bmm'] / med['loop']:>9.2f}"
            f"  {med['loop'] / roof:>9.2f} {med['vmap'] / roof:>9.2f} {med['bmm'] / roof:>9.2f}"
        )
    auto = chunk_rows(ens.bytes_per_row(), device=device)
    Xh = X.cpu().numpy()
    pool_rates, loop_rates, roofs = [], [], []
    for _ in range(args.repeats):
        roofs.append(sgemm_flops(device) / fps)
        pool_rates.append(
            n
            / once(
                lambda: score_pool(ens, Xh, scores=("predictive_entropy", "mutual_information")),
                device,
            )
        )
        loop_rates.append(n / once(runner("loop", best["loop"][2]), device))
    sp, lp = statistics.median(pool_rates), statistics.median(loop_rates)
    roof = statistics.median(roofs)
    print(
        f"score_pool (numpy pool -> scores, auto chunk {auto} rows, vmap, entropy+BALD): "
        f"{sp:,.0f} samples/s = {sp / roof:.2f} of roofline, {sp / lp:.2f}x the loop at batch {best['loop'][2]} "
        f"({lp:,.0f}/s in the same rounds)"
    )
    print(
        "best: "
        + ", ".join(
            f"{k} {r:,.0f}/s at batch {b} ({r / rf:.2f} of roofline)"
            for k, (r, rf, b) in best.items()
        )
    )
    print(
        f"best vmap / best loop = {best['vmap'][0] / best['loop'][0]:.2f}, best bmm / best loop = {best['bmm'][0] / best['loop'][0]:.2f}"
    )


if __name__ == "__main__":
    main()
