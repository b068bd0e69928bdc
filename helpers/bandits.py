"""Multi-armed bandits over clusters: UCB1 and Thompson sampling, and budget allocation.

In the UMC recipe every cluster of uncertain pool items is an arm; a round's labeling
budget ``B`` is split over the arms with :meth:`UCB1.allocate` /
:meth:`ThompsonSampling.allocate`, and once the batch is labeled each arm that received
samples is rewarded with :meth:`update` (e.g. the mean uncertainty of its labeled items,
:func:`reward_mean_uncertainty`, or the accuracy gain attributed to it,
:func:`reward_accuracy_gain`).

Both bandits keep plain-number state (:meth:`get_state` is JSON-serialisable and
:meth:`set_state` / :meth:`from_state` restore it exactly, random generator included), so
the curation loop can save it after every step and a restarted kernel continues with the
same choices.

Arms that appear and disappear
------------------------------
Clusters are recomputed every round, so arm ``i`` of one round is not arm ``i`` of the
next. :meth:`resize` takes ``mapping[new_arm] = old_arm`` (or ``-1``); :func:`match_arms`
builds it by nearest cluster center. The rule: a new arm matched to an old one inherits
that arm's statistics (pull count, reward sum, posterior); an unmatched new arm (``-1``)
starts fresh from the prior; old arms that no new arm maps to are dropped. When several
new arms map to one old arm (a cluster split) each inherits a copy of its statistics.
The total pull count ``T`` is always the sum of the per-arm counts.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._validation import check_array, check_positive, check_random_state

__all__ = [
    "UCB1",
    "ThompsonSampling",
    "BANDITS",
    "make_bandit",
    "match_arms",
    "reward_mean_uncertainty",
    "reward_accuracy_gain",
]


def _check_n_arms(n_arms: Any, *, name: str = "n_arms") -> int:
    if isinstance(n_arms, bool) or not isinstance(n_arms, numbers.Integral):
        raise TypeError(f"{name}: expected a positive int, got {type(n_arms).__name__}")
    if int(n_arms) < 1:
        raise ValueError(f"{name}: expected a positive int, got {n_arms!r}")
    return int(n_arms)


def _check_budget(budget: Any) -> int:
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise TypeError(f"budget: expected a non-negative int, got {type(budget).__name__}")
    if int(budget) < 0:
        raise ValueError(f"budget: expected a non-negative int, got {budget!r}")
    return int(budget)


def _check_capacities(capacities: Any, n_arms: int, budget: int) -> np.ndarray:
    if capacities is None:
        return np.full(n_arms, budget, dtype=np.int64)
    cap = np.asarray(capacities)
    if cap.shape != (n_arms,):
        raise ValueError(f"capacities: expected shape ({n_arms},), got shape {cap.shape}")
    if not np.issubdtype(cap.dtype, np.integer):
        if not np.issubdtype(cap.dtype, np.floating) or not np.all(cap == np.round(cap)):
            raise TypeError(f"capacities: expected non-negative integers, got dtype {cap.dtype}")
    cap = cap.astype(np.int64)
    if (cap < 0).any():
        raise ValueError(f"capacities: expected non-negative integers, got min {cap.min()}")
    if cap.sum() < budget:
        raise ValueError(
            f"budget: expected at most sum(capacities) = {int(cap.sum())} samples, got {budget}"
        )
    return cap


def _check_mapping(mapping: Any, n_new: int, n_old: int) -> np.ndarray:
    if mapping is None:
        m = np.arange(n_new, dtype=np.int64)
        m[m >= n_old] = -1
        return m
    m = np.asarray(mapping)
    if m.shape != (n_new,) or not np.issubdtype(m.dtype, np.integer):
        raise ValueError(
            f"mapping: expected an int array of shape ({n_new},) with old arm ids or -1, "
            f"got shape {m.shape} dtype {m.dtype}"
        )
    m = m.astype(np.int64)
    if ((m < -1) | (m >= n_old)).any():
        raise ValueError(f"mapping: expected values in [-1, {n_old - 1}], got {m.min()}..{m.max()}")
    return m


class _Bandit:
    """Shared bookkeeping: per-arm pull counts and reward sums."""

    n_arms: int
    counts: np.ndarray
    sums: np.ndarray

    def _init_stats(self, n_arms: int) -> None:
        self.n_arms = n_arms
        self.counts = np.zeros(n_arms, dtype=np.int64)
        self.sums = np.zeros(n_arms, dtype=np.float64)

    @property
    def total_pulls(self) -> int:
        """T, the number of updates so far (the sum of the per-arm counts)."""
        return int(self.counts.sum())

    @property
    def means(self) -> np.ndarray:
        """Mean reward per arm, shape (n_arms,); NaN for arms never pulled."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.nan)

    def _check_arm(self, arm: Any) -> int:
        if isinstance(arm, bool) or not isinstance(arm, numbers.Integral):
            raise TypeError(
                f"arm: expected an int in [0, {self.n_arms - 1}], got {type(arm).__name__}"
            )
        if not 0 <= int(arm) < self.n_arms:
            raise ValueError(f"arm: expected an int in [0, {self.n_arms - 1}], got {arm!r}")
        return int(arm)

    @staticmethod
    def _check_reward(reward: Any) -> float:
        if isinstance(reward, bool) or not isinstance(reward, numbers.Real):
            raise TypeError(f"reward: expected a real number, got {type(reward).__name__}")
        r = float(reward)
        if not math.isfinite(r):
            raise ValueError(f"reward: expected a finite number, got {reward!r}")
        return r

    def update_many(self, rewards: Any) -> None:
        """Update every arm with a finite reward in ``rewards`` (shape (n_arms,)); NaN = not pulled.

        The per-round form: ``rewards`` as returned by :func:`reward_mean_uncertainty`.
        Arms are updated in index order, one pull each.
        """
        r = check_array(rewards, name="rewards", ndim=1, finite=False)
        if r.shape != (self.n_arms,):
            raise ValueError(f"rewards: expected shape ({self.n_arms},), got shape {r.shape}")
        if np.isinf(r).any():
            raise ValueError("rewards: expected finite values or NaN (= arm not pulled), got inf")
        for arm in np.flatnonzero(~np.isnan(r)):
            self.update(int(arm), float(r[arm]))

    def update(self, arm: int, reward: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_state(self, state: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: dict) -> Any:
        """A new bandit with the state saved by :meth:`get_state`."""
        if not isinstance(state, dict) or state.get("type") != cls.__name__:
            got = state.get("type") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state: expected a dict from {cls.__name__}.get_state(), got {got!r}")
        obj = cls.__new__(cls)
        obj.set_state(state)
        return obj


class UCB1(_Bandit):
    """UCB1 (Auer et al. 2002) over ``n_arms`` arms.

    The index of arm ``c`` after ``T`` pulls in total is
    ``UCB_c = mean_c + c * sqrt(ln T / n_c)``; with the default ``c = sqrt(2)`` this is the
    design's ``mean_c + sqrt(2 ln T / n_c)``. Arms never pulled come first (lowest index
    first); ties go to the lowest index, so UCB1 is deterministic. The exploration constant
    assumes rewards in [0, 1]; rescale other rewards or adjust ``c``.

    Parameters
    ----------
    n_arms : int
        Number of arms (clusters).
    c : float >= 0, default sqrt(2)
        Exploration constant; 0 gives a greedy bandit.

    Examples
    --------
    >>> b = UCB1(3)
    >>> [b.select() for _ in range(1)]
    [0]
    >>> b.update(0, 1.0); b.update(1, 0.0); b.update(2, 0.5)
    >>> b.allocate(4, capacities=[1, 5, 5]).tolist()
    [1, 1, 2]
    """

    def __init__(self, n_arms: int, *, c: float = math.sqrt(2)) -> None:
        self._init_stats(_check_n_arms(n_arms))
        self.c = check_positive(c, name="c", strict=False)

    def _index(self, counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
        T = counts.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / np.maximum(counts, 1)
            bonus = self.c * np.sqrt(math.log(max(T, 1)) / np.maximum(counts, 1))
        return np.where(counts > 0, mean + bonus, np.inf)

    def ucb(self) -> np.ndarray:
        """The current UCB index per arm, shape (n_arms,); ``inf`` for arms never pulled."""
        return self._index(self.counts, self.sums)

    def select(self) -> int:
        """The arm to pull next: an unpulled arm if any, else the largest UCB index."""
        return int(np.argmax(self.ucb()))

    def update(self, arm: int, reward: float) -> None:
        """Record one pull of ``arm`` with ``reward`` (any finite real; [0, 1] assumed by ``c``)."""
        a = self._check_arm(arm)
        self.counts[a] += 1
        self.sums[a] += self._check_reward(reward)

    def allocate(self, budget: int, *, capacities: Any = None) -> np.ndarray:
        """Split ``budget`` samples over the arms for this round.

        Each of the ``budget`` units goes to the arm with the largest UCB index among arms
        with capacity left, after which that arm counts one *virtual* pull (its mean is
        kept, its count and ``T`` grow), so a batch spreads over arms as the exploration
        bonus shrinks. An arm never pulled takes its first virtual pull at the optimistic
        reward 1 (the top of the assumed [0, 1] range), so a fresh bandit spreads a batch
        round-robin over its arms. The stored statistics are not changed: call
        :meth:`update` once the rewards are known.

        Parameters
        ----------
        budget : int
            Samples to place, >= 0.
        capacities : array-like of int, shape (n_arms,), optional
            How many candidates each arm (cluster) has; an arm never gets more.

        Returns
        -------
        ndarray of int64, shape (n_arms,)
            Samples per arm, summing to ``budget``.
        """
        budget = _check_budget(budget)
        cap = _check_capacities(capacities, self.n_arms, budget)
        counts = self.counts.astype(np.float64)
        sums = self.sums.copy()
        means = self.sums / np.maximum(self.counts, 1)
        out = np.zeros(self.n_arms, dtype=np.int64)
        for _ in range(budget):
            idx = self._index(counts, sums)
            idx[out >= cap] = -np.inf
            a = int(np.argmax(idx))
            out[a] += 1
            if counts[a] > 0:
                sums[a] += means[a]
            else:
                # an unpulled arm takes its first virtual pull at the optimistic value 1
                # (the top of the assumed reward range) so it stays attractive but finite
                sums[a] += 1.0
            counts[a] += 1
        return out

    def resize(self, n_arms: int, mapping: Any = None) -> None:
        """Change the number of arms when clusters change (see the module docstring's rule).

        Parameters
        ----------
        n_arms : int
            The new number of arms.
        mapping : array-like of int, shape (n_arms,), optional
            ``mapping[new] = old`` arm whose statistics the new arm inherits, or -1 for a
            fresh arm; default: arms ``0..min(old, new)-1`` keep their statistics.
        """
        n_new = _check_n_arms(n_arms)
        m = _check_mapping(mapping, n_new, self.n_arms)
        keep = m >= 0
        counts = np.zeros(n_new, dtype=np.int64)
        sums = np.zeros(n_new, dtype=np.float64)
        counts[keep] = self.counts[m[keep]]
        sums[keep] = self.sums[m[keep]]
        self.n_arms, self.counts, self.sums = n_new, counts, sums

    def get_state(self) -> dict:
        """JSON-serialisable state: ``{"type", "n_arms", "c", "counts", "sums"}``."""
        return {
            "type": "UCB1",
            "n_arms": self.n_arms,
            "c": self.c,
            "counts": self.counts.tolist(),
            "sums": self.sums.tolist(),
        }

    def set_state(self, state: dict) -> None:
        """Restore the state saved by :meth:`get_state`."""
        if not isinstance(state, dict) or state.get("type") != "UCB1":
            got = state.get("type") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state: expected a dict from UCB1.get_state(), got {got!r}")
        n = _check_n_arms(state["n_arms"])
        self._init_stats(n)
        self.c = float(state["c"])
        self.counts = np.asarray(state["counts"], dtype=np.int64).reshape(n)
        self.sums = np.asarray(state["sums"], dtype=np.float64).reshape(n)


class ThompsonSampling(_Bandit):
    """Beta-Bernoulli Thompson sampling over ``n_arms`` arms.

    Every arm has a Beta(alpha, beta) posterior starting at ``prior``. A reward ``r`` is
    first mapped to [0, 1] by ``(r - low) / (high - low)`` with ``reward_range = (low,
    high)``; the update is the fractional Beta update ``alpha += r01``, ``beta += 1 - r01``
    (exact for Bernoulli rewards, the usual extension for rewards in [0, 1]). A reward
    outside ``reward_range`` raises ``ValueError`` rather than being clipped: pass e.g.
    ``reward_range=(-1, 1)`` for accuracy gains.

    Parameters
    ----------
    n_arms : int
        Number of arms (clusters).
    prior : (float, float), default (1.0, 1.0)
        Beta prior (alpha, beta), both > 0; (1, 1) is uniform.
    reward_range : (float, float), default (0.0, 1.0)
        The interval rewards are known to lie in.
    random_state : None, int or numpy.random.Generator
        Source of the posterior draws (a Generator is used, not copied).

    Examples
    --------
    >>> b = ThompsonSampling(2, random_state=0)
    >>> for _ in range(20):
    ...     b.update(0, 1.0); b.update(1, 0.0)
    >>> b.allocate(10).tolist()
    [10, 0]
    """

    def __init__(
        self,
        n_arms: int,
        *,
        prior: tuple[float, float] = (1.0, 1.0),
        reward_range: tuple[float, float] = (0.0, 1.0),
        random_state: Any = None,
    ) -> None:
        self._init_stats(_check_n_arms(n_arms))
        if not isinstance(prior, tuple | list) or len(prior) != 2:
            raise ValueError(
                f"prior: expected a pair (alpha, beta) of positive numbers, got {prior!r}"
            )
        self.prior = (
            check_positive(prior[0], name="prior[0]"),
            check_positive(prior[1], name="prior[1]"),
        )
        if not isinstance(reward_range, tuple | list) or len(reward_range) != 2:
            raise ValueError(f"reward_range: expected a pair (low, high), got {reward_range!r}")
        lo, hi = (float(reward_range[0]), float(reward_range[1]))
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"reward_range: expected finite low < high, got {reward_range!r}")
        self.reward_range = (lo, hi)
        self.alpha = np.full(self.n_arms, self.prior[0])
        self.beta = np.full(self.n_arms, self.prior[1])
        self._rng = check_random_state(random_state)

    def _to_unit(self, reward: float) -> float:
        lo, hi = self.reward_range
        if not lo <= reward <= hi:
            raise ValueError(
                f"reward: expected a number in reward_range [{lo}, {hi}], got {reward!r}"
            )
        return (reward - lo) / (hi - lo)

    def sample(self) -> np.ndarray:
        """One draw per arm from the posteriors, shape (n_arms,) (advances the generator)."""
        return self._rng.beta(self.alpha, self.beta)

    def select(self) -> int:
        """The arm whose posterior draw is largest."""
        return int(np.argmax(self.sample()))

    def update(self, arm: int, reward: float) -> None:
        """Record one pull of ``arm`` with ``reward`` in ``reward_range``."""
        a = self._check_arm(arm)
        r = self._check_reward(reward)
        u = self._to_unit(r)
        self.counts[a] += 1
        self.sums[a] += r
        self.alpha[a] += u
        self.beta[a] += 1.0 - u

    def allocate(self, budget: int, *, capacities: Any = None) -> np.ndarray:
        """Split ``budget`` samples over the arms for this round (batch Thompson sampling).

        Each unit draws one sample from every posterior and goes to the arm with the
        largest draw among arms with capacity left. The posteriors are not changed (call
        :meth:`update` once rewards are known); the generator advances.

        Parameters
        ----------
        budget : int
            Samples to place, >= 0.
        capacities : array-like of int, shape (n_arms,), optional
            How many candidates each arm (cluster) has; an arm never gets more.

        Returns
        -------
        ndarray of int64, shape (n_arms,)
            Samples per arm, summing to ``budget``.
        """
        budget = _check_budget(budget)
        cap = _check_capacities(capacities, self.n_arms, budget)
        out = np.zeros(self.n_arms, dtype=np.int64)
        if budget == 0:
            return out
        draws = self._rng.beta(self.alpha, self.beta, size=(budget, self.n_arms))
        for row in draws:
            row[out >= cap] = -np.inf
            out[int(np.argmax(row))] += 1
        return out

    def resize(self, n_arms: int, mapping: Any = None) -> None:
        """Change the number of arms when clusters change (see the module docstring's rule).

        Parameters
        ----------
        n_arms : int
            The new number of arms.
        mapping : array-like of int, shape (n_arms,), optional
            ``mapping[new] = old`` arm whose posterior the new arm inherits, or -1 for a
            fresh arm (the prior); default: arms ``0..min(old, new)-1`` keep theirs.
        """
        n_new = _check_n_arms(n_arms)
        m = _check_mapping(mapping, n_new, self.n_arms)
        keep = m >= 0
        counts = np.zeros(n_new, dtype=np.int64)
        sums = np.zeros(n_new)
        alpha = np.full(n_new, self.prior[0])
        beta = np.full(n_new, self.prior[1])
        counts[keep], sums[keep] = self.counts[m[keep]], self.sums[m[keep]]
        alpha[keep], beta[keep] = self.alpha[m[keep]], self.beta[m[keep]]
        self.n_arms, self.counts, self.sums, self.alpha, self.beta = (
            n_new,
            counts,
            sums,
            alpha,
            beta,
        )

    def get_state(self) -> dict:
        """JSON-serialisable state, including the generator's bit-generator state."""
        return {
            "type": "ThompsonSampling",
            "n_arms": self.n_arms,
            "prior": list(self.prior),
            "reward_range": list(self.reward_range),
            "counts": self.counts.tolist(),
            "sums": self.sums.tolist(),
            "alpha": self.alpha.tolist(),
            "beta": self.beta.tolist(),
            "rng": self._rng.bit_generator.state,
        }

    def set_state(self, state: dict) -> None:
        """Restore the state saved by :meth:`get_state` (the generator is restored too)."""
        if not isinstance(state, dict) or state.get("type") != "ThompsonSampling":
            got = state.get("type") if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"state: expected a dict from ThompsonSampling.get_state(), got {got!r}"
            )
        n = _check_n_arms(state["n_arms"])
        self._init_stats(n)
        self.prior = (float(state["prior"][0]), float(state["prior"][1]))
        self.reward_range = (float(state["reward_range"][0]), float(state["reward_range"][1]))
        self.counts = np.asarray(state["counts"], dtype=np.int64).reshape(n)
        self.sums = np.asarray(state["sums"], dtype=np.float64).reshape(n)
        self.alpha = np.asarray(state["alpha"], dtype=np.float64).reshape(n)
        self.beta = np.asarray(state["beta"], dtype=np.float64).reshape(n)
        rng_state = state["rng"]
        bitgen = getattr(np.random, rng_state["bit_generator"])()
        bitgen.state = rng_state
        self._rng = np.random.Generator(bitgen)


#: Bandit classes by name, for ``cluster_bandit(bandit="ucb1")`` and config files.
BANDITS: dict[str, type] = {"ucb1": UCB1, "thompson": ThompsonSampling}


def make_bandit(name: str, n_arms: int, *, random_state: Any = None, **options: Any) -> Any:
    """A bandit from :data:`BANDITS` by name (``random_state`` is passed where it is used)."""
    if name not in BANDITS:
        raise ValueError(f"bandit: expected one of {sorted(BANDITS)}, got {name!r}")
    if name == "thompson":
        options["random_state"] = random_state
    return BANDITS[name](n_arms, **options)


def match_arms(
    old_centers: Any,
    new_centers: Any,
    *,
    metric: str = "cosine",
    max_distance: float | None = None,
) -> np.ndarray:
    """``mapping[new] = old``: each new cluster's nearest old center (for :meth:`resize`).

    Parameters
    ----------
    old_centers : array-like of shape (n_old, d)
    new_centers : array-like of shape (n_new, d)
    metric : {"cosine", "euclidean"}, default "cosine"
        Cosine distance is ``1 - cos``; matches the cosine k-means of ``cluster_bandit``.
    max_distance : float, optional
        A new cluster farther than this from every old center gets -1 (a fresh arm).

    Returns
    -------
    ndarray of int64, shape (n_new,)
    """
    old = check_array(old_centers, name="old_centers", ndim=2)
    new = check_array(new_centers, name="new_centers", ndim=2)
    if old.shape[1] != new.shape[1]:
        raise ValueError(
            f"new_centers: expected {old.shape[1]} columns like old_centers, got shape {new.shape}"
        )
    if metric == "cosine":
        on = old / np.maximum(np.linalg.norm(old, axis=1, keepdims=True), 1e-12)
        nn = new / np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-12)
        dist = 1.0 - nn @ on.T
    elif metric == "euclidean":
        dist = np.sqrt(
            np.maximum((new**2).sum(1)[:, None] + (old**2).sum(1)[None, :] - 2.0 * new @ old.T, 0.0)
        )
    else:
        raise ValueError(f"metric: expected one of ['cosine', 'euclidean'], got {metric!r}")
    mapping = np.argmin(dist, axis=1).astype(np.int64)
    if max_distance is not None:
        md = check_positive(max_distance, name="max_distance", strict=False)
        mapping[dist[np.arange(len(new)), mapping] > md] = -1
    return mapping


def reward_mean_uncertainty(uncertainty: Any, arms: Any, n_arms: int) -> np.ndarray:
    """Per-arm reward = mean uncertainty U(x) of the labeled batch items from that arm.

    Parameters
    ----------
    uncertainty : array-like of shape (k,)
        U(x) of the k items labeled this round (as scored when they were selected).
    arms : array-like of int, shape (k,)
        The arm (cluster) each item was selected from.
    n_arms : int

    Returns
    -------
    ndarray of float64, shape (n_arms,)
        Mean uncertainty per arm; NaN for arms that received no item (pass to
        :meth:`UCB1.update_many`, which skips them).
    """
    n = _check_n_arms(n_arms)
    u = check_array(uncertainty, name="uncertainty", ndim=1, min_rows=0)
    a = np.asarray(arms)
    if a.shape != u.shape or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(
            f"arms: expected ints of shape {u.shape}, got shape {a.shape} dtype {a.dtype}"
        )
    if a.size and (a.min() < 0 or a.max() >= n):
        raise ValueError(f"arms: expected values in [0, {n - 1}], got {a.min()}..{a.max()}")
    s = np.bincount(a, weights=u, minlength=n)
    k = np.bincount(a, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > 0, s / np.maximum(k, 1), np.nan)


def reward_accuracy_gain(before: Any, after: Any, *, allocation: Any = None) -> np.ndarray:
    """Per-arm reward = the accuracy gain attributed to that arm.

    Two forms:

    * ``before`` and ``after`` of shape (n_arms,): accuracy on the evaluation items of each
      cluster before and after retraining; the reward is ``after - before`` for arms that
      received samples (``allocation > 0``, or all arms when ``allocation`` is None), NaN
      for the others.
    * scalars: the overall gain ``after - before`` is attributed to the arms in proportion
      to their share of the round's samples, ``gain * b_c / sum(b)`` (``allocation``
      required); NaN for arms with ``b_c = 0``.

    Gains lie in [-1, 1]: use ``ThompsonSampling(..., reward_range=(-1, 1))``.
    """
    b, a = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if b.shape != a.shape or b.ndim > 1:
        raise ValueError(
            f"after: expected the shape of before {b.shape} (scalar or 1-D), got {a.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("before/after: expected finite accuracies, got NaN or inf")
    alloc = None
    if allocation is not None:
        alloc = check_array(allocation, name="allocation", ndim=1)
        if (alloc < 0).any():
            raise ValueError("allocation: expected non-negative sample counts, got a negative one")
    if b.ndim == 1:
        gain = a - b
        if alloc is None:
            return gain
        if alloc.shape != gain.shape:
            raise ValueError(f"allocation: expected shape {gain.shape}, got {alloc.shape}")
        return np.where(alloc > 0, gain, np.nan)
    if alloc is None:
        raise ValueError("allocation: required when before/after are scalars, got None")
    total = alloc.sum()
    if total <= 0:
        raise ValueError("allocation: expected at least one sample, got all zeros")
    share = alloc / total
    return np.where(alloc > 0, float(a - b) * share, np.nan)
