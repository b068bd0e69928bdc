"""Small fits: one torch thread against torch's default thread count, interleaved.

A 3-member MLP ensemble (40 epochs) on n = 30 / 200 / 1000 / 3000 MNIST digits (784 inputs), each size fitted
with torch.set_num_threads(1) and with the default count (os.cpu_count()) in turn, 5 times;
prints median seconds, the ratio default / one thread and the load average. The loop's
fits go through gapscope.helpers.training.train, which picks one thread on the CPU for fits
of at most SMALL_FIT_ITEMS items; this script calls the inner _train to compare both.

    python benchmarks/bench_threads.py
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from gapscope.helpers import training
from gapscope.helpers.data import load_dataset
from gapscope.helpers.models import Ensemble


def main(repeats: int = 5) -> None:
    ds = load_dataset("mnist", random_state=0)
    X = ds.pool.X.reshape(len(ds.pool), -1)
    y = ds.oracle.true_labels(ds.pool.ids)
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order]
    default = os.cpu_count() or 1
    sizes = (30, 200, 1000, 3000)
    times: dict[tuple[int, int], list[float]] = {}
    inner = training.train
    training.train = training._train  # bypass the automatic choice
    import gapscope.helpers.models as models

    models.train = training._train
    try:
        for _ in range(repeats):
            for n in sizes:
                for th in (1, default):
                    torch.set_num_threads(th)
                    t = time.perf_counter()
                    Ensemble(n_members=3, epochs=40, arch="mlp", random_state=0).fit(X[:n], y[:n])
                    times.setdefault((n, th), []).append(time.perf_counter() - t)
    finally:
        training.train = inner
        models.train = inner
    print(f"load average {os.getloadavg()}, default threads {default}, {repeats} repeats")
    print(f"{'n':>6} {'1 thread s':>11} {'default s':>10} {'default/1':>10}")
    for n in sizes:
        one, dflt = np.median(times[(n, 1)]), np.median(times[(n, default)])
        print(f"{n:>6} {one:>11.2f} {dflt:>10.2f} {dflt / one:>10.2f}")


if __name__ == "__main__":
    main()
