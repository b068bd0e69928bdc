"""A user's own components, as a research repo would keep them (used by tests as specs).

Imported by the tests and, through ``pythonpath``, by the papermill kernels of a grid.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from gapscope.helpers.components import register_strategy
from gapscope.helpers.data import Dataset, Pool


def most_uncertain(budget, ctx):
    """My own strategy: the most uncertain unlabeled items by predictive entropy."""
    return ctx.unlabeled[np.argsort(-ctx.scores("predictive_entropy"), kind="stable")[:budget]]


@register_strategy("farthest_first")
def farthest_first(budget, ctx):
    """Greedy farthest-first in the model's embedding, from the labeled set."""
    E = ctx.embeddings(where="pool").astype(np.float64)
    d = np.full(len(E), np.inf)
    for i in ctx.labeled:
        d = np.minimum(d, ((E - E[i]) ** 2).sum(1))
    d[ctx.labeled_mask] = -np.inf
    out = []
    for _ in range(budget):
        j = int(np.argmax(d))
        out.append(j)
        d = np.minimum(d, ((E - E[j]) ** 2).sum(1))
        d[j] = -np.inf
    return np.asarray(out, dtype=np.int64)


class TinyNet(torch.nn.Module):
    def __init__(self, n_in: int, n_classes: int):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(n_in, 16), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, n_classes)

    def forward(self, x):
        z = self.body(x.flatten(1))
        return self.head(z), z


def make_net(n_classes: int, feature_shape: tuple) -> torch.nn.Module:
    """A torch module factory: logits and a 16-d embedding."""
    return TinyNet(int(np.prod(feature_shape)), n_classes)


def breast_cancer(random_state=None, n_labeled: int = 30, n_test: int = 169) -> Dataset:
    """scikit-learn's breast-cancer data, standardised: a pool with n_labeled labels, a test split."""
    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(random_state)
    order = rng.permutation(len(y))
    X = StandardScaler().fit_transform(X).astype(np.float32)
    te, po = order[:n_test], order[n_test:]
    labels = np.full(len(po), -1)
    labels[:n_labeled] = y[po][:n_labeled]
    pool = Pool.from_arrays(X[po], labels=labels, ids=po)
    test = Pool.from_arrays(X[te], labels=y[te], ids=te)
    return Dataset.from_pool(pool, test=test, oracle=y[po], name="breast-cancer")
