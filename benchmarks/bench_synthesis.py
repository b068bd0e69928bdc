"""Synthesis throughput: samples generated and filtered per second, against the baselines.

Data: scikit-learn's 8x8 digits (1797 x 64, pixels in [0, 1]). A VAE (MLP 64-256-128-8,
trained 10 epochs: the weights do not change the cost) is the generator; a multinomial
logistic regression trained on the real digits is the "separately trained classifier" of the
label-consistency filter. For N generated items, in the same run:

- ``ours prior``: :func:`helpers.synthesis.generate_from_prior` (batched decode through
  torch, intended labels from the VAE head, one provenance dict per item), then the
  classifier's probabilities and :func:`helpers.synthesis.filter_batch` (u_min and tau);
- ``ours decode only``: ``vae.decode`` of N latents (the generator's own ceiling);
- ``ours low-density``: :func:`helpers.synthesis.generate_low_density` (KDE on the 1797
  training latents, 20 n candidates, Gumbel-top-k; n capped at 20k), then the same filter;
- ``ours conditional``: a ConditionalVAE's :func:`generate_conditional` + filter;
- ``sklearn GMM + LR``: what a user would otherwise write -- ``GaussianMixture(10 comps,
  full covariance).sample(N)`` in pixel space, ``LogisticRegression.predict_proba`` and a
  numpy mask with the same two thresholds (no provenance);
- ``per-sample loop``: the same VAE decoder called one latent at a time (the plain loop).

Each row reports samples/s (best of ``--repeats``) and the ratio to ``sklearn GMM + LR``.

Run: ``python benchmarks/bench_synthesis.py [--quick] [--device cpu|cuda] [--threads N]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time

import numpy as np


def best_of(fn, repeats: int, sync=lambda: None) -> float:
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 20k instead of 200k")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import sklearn
    import torch
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    from gapscope.helpers import synthesis as S
    from gapscope.helpers.generators import VAE, ConditionalVAE
    from gapscope.helpers.scoring import predictive_entropy

    torch.set_num_threads(args.threads)
    limits = threadpool_limits(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    N = 20_000 if args.quick else 200_000
    n_loop = 2_000 if args.quick else 5_000

    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)
    y = d.target
    print(f"# bench_synthesis  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC")
    print(
        f"# device={dev}  torch={torch.__version__}  sklearn={sklearn.__version__}  "
        f"threads={args.threads}  cpu={platform.machine()}  N={N}  quick={args.quick}"
    )
    t0 = time.perf_counter()
    vae = VAE(latent_dim=8, arch="mlp", epochs=10, device=dev, random_state=0).fit(X, y)
    cvae = ConditionalVAE(latent_dim=8, arch="mlp", epochs=10, device=dev, random_state=0).fit(X, y)
    lr = LogisticRegression(max_iter=1000).fit(X.reshape(len(X), -1), y)
    print(f"# setup (2 VAEs x 10 epochs + LR): {time.perf_counter() - t0:.1f} s")
    u_min, tau = 0.05, 0.5
    Z_ref = vae.encode(X)

    def filt(batch):
        P = lr.predict_proba(batch.X.reshape(len(batch), -1))
        u = predictive_entropy(P[None])
        return S.filter_batch(batch, uncertainty=u, u_min=u_min, label_probs=P, tau=tau)

    kept = {}

    def ours_prior():
        kept["prior"] = len(filt(S.generate_from_prior(vae, N, random_state=1)))

    def ours_decode():
        vae.decode(np.random.default_rng(1).standard_normal((N, 8)).astype(np.float32))

    n_low = min(N, 20_000)  # SIR scores 20 n candidates against the KDE: O(n) but heavy

    def ours_low():
        kept["low"] = len(filt(S.generate_low_density(vae, Z_ref, n_low, random_state=1)))

    def ours_cond():
        c = S.draw_conditions(np.ones(10), N, random_state=1)
        kept["cond"] = len(filt(S.generate_conditional(cvae, c, random_state=1)))

    gmm = GaussianMixture(10, covariance_type="full", reg_covar=1e-3, random_state=0).fit(
        X.reshape(len(X), -1)
    )

    def gmm_lr():
        Xs, _ = gmm.sample(N)
        P = lr.predict_proba(Xs)
        ent = -(P * np.log(np.clip(P, 1e-12, 1))).sum(1)
        intended = P.argmax(1)  # a GMM has no class: its "intended" label is the LR's own
        keep = (ent >= u_min) & (P[np.arange(N), intended] >= tau)
        kept["gmm"] = int(keep.sum())

    module = vae.module_
    zl = torch.randn(n_loop, 8, generator=torch.Generator().manual_seed(0)).to(dev)

    def loop():
        with torch.no_grad():
            for i in range(n_loop):
                torch.sigmoid(module.decode_logits(zl[i : i + 1], None)).cpu().numpy()

    rows = []
    for name, fn, n in (
        ("sklearn GMM + LR (baseline)", gmm_lr, N),
        ("ours prior + filter", ours_prior, N),
        ("ours decode only", ours_decode, N),
        ("ours low-density + filter", ours_low, n_low),
        ("ours conditional + filter", ours_cond, N),
        ("per-sample decode loop", loop, n_loop),
    ):
        t = best_of(fn, args.repeats, sync)
        rows.append((name, n, t, n / t))
    base = rows[0][3]
    print()
    print(f"{'method':32s} {'n':>8s} {'best s':>8s} {'samples/s':>11s} {'x GMM+LR':>9s}")
    for name, n, t, rate in rows:
        print(f"{name:32s} {n:8d} {t:8.3f} {rate:11.0f} {rate / base:9.2f}")
    print()
    print(
        "kept after filters (u_min=0.05, tau=0.5): "
        + ", ".join(
            f"{k} {v}/{n_low if k == 'low' else N} ({v / (n_low if k == 'low' else N):.0%})"
            for k, v in kept.items()
        )
    )
    limits.restore_original_limits()


if __name__ == "__main__":
    main()
