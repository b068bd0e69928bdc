"""Tests for helpers.bandits: UCB1, Thompson sampling, allocation, state, arm changes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapscope.helpers.bandits import (
    BANDITS,
    UCB1,
    ThompsonSampling,
    make_bandit,
    match_arms,
    reward_accuracy_gain,
    reward_mean_uncertainty,
)

MU = np.array([0.2, 0.35, 0.5, 0.65, 0.8])


def _cumulative_regret(bandit, T: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    reg = np.empty(T)
    for t in range(T):
        a = bandit.select()
        bandit.update(a, float(rng.random() < MU[a]))
        reg[t] = MU.max() - MU[a]
    return np.cumsum(reg)


@pytest.mark.parametrize(
    "make",
    [lambda s: UCB1(len(MU)), lambda s: ThompsonSampling(len(MU), random_state=s)],
    ids=["ucb1", "thompson"],
)
def test_regret_on_bernoulli_arms_is_small_and_sublinear(make):
    # 5 Bernoulli arms, gaps 0.15..0.6. A uniform allocation has regret
    # T * (max - mean) = 0.3 T = 1500 after 5000 pulls. Measured (5 seeds): UCB1 ~142,
    # Thompson ~18; regret(5000)/regret(1000) ~1.9 and ~1.4. Linear growth would give 5.
    # Thresholds: < 15% of uniform per seed, mean ratio < 3.
    T = 5000
    uniform = T * (MU.max() - MU.mean())
    R = np.array([_cumulative_regret(make(s), T, 100 + s) for s in range(5)])
    assert (R[:, -1] < 0.15 * uniform).all(), R[:, -1]
    ratio = R[:, -1].mean() / R[:, 999].mean()
    assert ratio < 3.0, ratio
    # the best arm gets most pulls: regret per pull in the last 1000 pulls is small
    assert (R[:, -1] - R[:, -1001]).mean() / 1000 < 0.05


def test_ucb1_index_matches_formula():
    b = UCB1(3, c=math.sqrt(2))
    for arm, r in [(0, 1.0), (1, 0.0), (2, 0.5), (0, 0.0), (2, 1.0)]:
        b.update(arm, r)
    T = 5
    counts = np.array([2.0, 1.0, 2.0])
    means = np.array([0.5, 0.0, 0.75])
    ref = means + np.sqrt(2.0 * math.log(T) / counts)  # the design's sqrt(2 ln T / n_c)
    np.testing.assert_allclose(b.ucb(), ref, rtol=1e-12)
    assert b.select() == int(np.argmax(ref))


def test_ucb1_pulls_unpulled_arms_first_in_order():
    b = UCB1(4)
    order = []
    for _ in range(4):
        a = b.select()
        order.append(a)
        b.update(a, 1.0)  # even a perfect reward does not stop exploration of the rest
    assert order == [0, 1, 2, 3]


def test_thompson_posterior_is_beta_bernoulli():
    b = ThompsonSampling(2, prior=(2.0, 3.0), random_state=0)
    rewards = [1, 0, 1, 1, 0]
    for r in rewards:
        b.update(1, float(r))
    assert b.alpha.tolist() == [2.0, 2.0 + 3]
    assert b.beta.tolist() == [3.0, 3.0 + 2]
    # draws follow Beta(alpha, beta): compare the mean of many draws (tolerance 5 sigma)
    draws = np.array([b.sample() for _ in range(4000)])
    mean_ref = b.alpha / (b.alpha + b.beta)
    sd_ref = np.sqrt(b.alpha * b.beta / ((b.alpha + b.beta) ** 2 * (b.alpha + b.beta + 1)))
    assert (np.abs(draws.mean(0) - mean_ref) < 5 * sd_ref / np.sqrt(4000)).all()


def test_thompson_reward_range_maps_and_rejects():
    b = ThompsonSampling(2, reward_range=(-1.0, 1.0), random_state=0)
    b.update(0, 0.5)  # -> 0.75 on [0, 1]
    assert b.alpha[0] == pytest.approx(1.75) and b.beta[0] == pytest.approx(1.25)
    with pytest.raises(ValueError, match="reward_range"):
        b.update(0, 1.5)
    with pytest.raises(ValueError, match="reward"):
        ThompsonSampling(2).update(0, -0.1)
    with pytest.raises(ValueError, match="reward_range"):
        ThompsonSampling(2, reward_range=(1.0, 1.0))


@pytest.mark.parametrize("name", sorted(BANDITS))
def test_allocate_sums_to_budget_and_respects_capacities(name):
    b = make_bandit(name, 4, random_state=0)
    for arm, r in [(0, 0.9), (1, 0.1), (2, 0.5), (3, 0.4)] * 3:
        b.update(arm, r)
    cap = np.array([3, 0, 10, 2])
    for budget in (0, 1, 7, 15):
        alloc = b.allocate(budget, capacities=cap)
        assert alloc.dtype == np.int64 and alloc.sum() == budget
        assert (alloc <= cap).all() and (alloc >= 0).all()
    with pytest.raises(ValueError, match="budget"):
        b.allocate(16, capacities=cap)
    with pytest.raises(ValueError, match="capacities"):
        b.allocate(2, capacities=[1, 2])
    # without capacities the best arm gets the most samples
    alloc = b.allocate(40)
    assert alloc.sum() == 40 and int(np.argmax(alloc)) == 0


def test_ucb1_allocate_does_not_change_statistics_and_spreads_unpulled():
    b = UCB1(3)
    alloc = b.allocate(6)
    assert alloc.tolist() == [2, 2, 2]  # no data: optimistic round robin
    assert b.total_pulls == 0
    b.update(0, 1.0)
    b.update(1, 0.0)
    b.update(2, 0.5)
    before = b.get_state()
    b.allocate(10)
    assert b.get_state() == before


@pytest.mark.parametrize("name", sorted(BANDITS))
def test_state_roundtrip_through_json_gives_identical_choices(name):
    b = make_bandit(name, 5, random_state=7)
    rng = np.random.default_rng(1)
    for _ in range(50):
        a = b.select()
        b.update(a, float(rng.random() < MU[a]))
    saved = json.loads(json.dumps(b.get_state()))
    cls = BANDITS[name]
    restored = cls.from_state(saved)
    c = make_bandit(name, 1, random_state=123)
    c.set_state(saved)

    def run(x):
        r2 = np.random.default_rng(2)
        out = []
        for _ in range(30):
            a = x.select()
            out.append(a)
            x.update(a, float(r2.random() < MU[a]))
        out.append(x.allocate(17).tolist())
        return out

    ref = run(b)
    assert run(restored) == ref
    assert run(c) == ref
    with pytest.raises(ValueError, match="state"):
        cls.from_state({"type": "other"})


@pytest.mark.parametrize("name", sorted(BANDITS))
def test_resize_inherits_matched_arms_and_drops_vanished(name):
    b = make_bandit(name, 3, random_state=0)
    for arm, r, k in [(0, 1.0, 2), (1, 0.0, 3), (2, 0.5, 4)]:
        for _ in range(k):
            b.update(arm, r)
    old_counts, old_sums = b.counts.copy(), b.sums.copy()
    # new arms: 0 <- old 2, 1 fresh, 2 <- old 0, 3 <- old 0 (split); old 1 vanishes
    b.resize(4, mapping=[2, -1, 0, 0])
    assert b.n_arms == 4
    assert b.counts.tolist() == [old_counts[2], 0, old_counts[0], old_counts[0]]
    np.testing.assert_allclose(b.sums, [old_sums[2], 0, old_sums[0], old_sums[0]])
    assert b.total_pulls == int(b.counts.sum())
    if name == "thompson":
        assert b.alpha[1] == 1.0 and b.beta[1] == 1.0  # fresh arm = prior
    else:
        assert b.select() == 1  # the fresh arm is unpulled, so it comes first
    # default mapping: keep the first arms, drop the rest
    b.resize(2)
    assert b.counts.tolist() == [old_counts[2], 0]
    with pytest.raises(ValueError, match="mapping"):
        b.resize(2, mapping=[0, 5])


def test_match_arms_is_nearest_center():
    rng = np.random.default_rng(0)
    old = rng.normal(size=(6, 4))
    new = old[[3, 1, 5]] * 2.0 + 0.01 * rng.normal(size=(3, 4))  # scaled: same direction
    assert match_arms(old, new, metric="cosine").tolist() == [3, 1, 5]
    new_e = rng.normal(size=(5, 4))
    d = ((new_e[:, None, :] - old[None]) ** 2).sum(-1)
    assert match_arms(old, new_e, metric="euclidean").tolist() == d.argmin(1).tolist()
    far = match_arms(old, new_e, metric="euclidean", max_distance=0.0)
    assert (far == -1).all()


def test_reward_helpers():
    r = reward_mean_uncertainty([0.2, 0.4, 0.9], [0, 0, 2], 4)
    np.testing.assert_allclose(r, [0.3, np.nan, 0.9, np.nan])
    b = UCB1(4)
    b.update_many(r)
    assert b.counts.tolist() == [1, 0, 1, 0]
    g = reward_accuracy_gain(0.80, 0.86, allocation=[2, 0, 1, 1])
    np.testing.assert_allclose(g, [0.03, np.nan, 0.015, 0.015])
    g2 = reward_accuracy_gain([0.5, 0.6], [0.7, 0.55], allocation=[1, 3])
    np.testing.assert_allclose(g2, [0.2, -0.05])
    with pytest.raises(ValueError, match="allocation"):
        reward_accuracy_gain(0.1, 0.2)
    with pytest.raises(ValueError, match="arms"):
        reward_mean_uncertainty([0.1], [4], 4)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="n_arms"):
        UCB1(0)
    with pytest.raises(TypeError, match="n_arms"):
        UCB1(2.5)
    with pytest.raises(ValueError, match="arm"):
        UCB1(2).update(2, 0.1)
    with pytest.raises(ValueError, match="reward"):
        UCB1(2).update(0, float("nan"))
    with pytest.raises(ValueError, match="prior"):
        ThompsonSampling(2, prior=(0.0, 1.0))
    with pytest.raises(ValueError, match="bandit"):
        make_bandit("eps-greedy", 2)


@settings(max_examples=40, deadline=None)
@given(
    n_arms=st.integers(1, 6),
    budget=st.integers(0, 30),
    rewards=st.lists(st.floats(0, 1), min_size=0, max_size=12),
    name=st.sampled_from(sorted(BANDITS)),
)
def test_allocate_property(n_arms, budget, rewards, name):
    b = make_bandit(name, n_arms, random_state=0)
    for i, r in enumerate(rewards):
        b.update(i % n_arms, r)  # includes all-equal rewards
    alloc = b.allocate(budget)
    assert alloc.shape == (n_arms,) and alloc.sum() == budget and (alloc >= 0).all()
    cap = np.full(n_arms, budget // n_arms + 1)
    alloc = b.allocate(budget, capacities=cap)
    assert alloc.sum() == budget and (alloc <= cap).all()
