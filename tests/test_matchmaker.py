"""Matchmaker: pair features, scores, Sherman-Morrison, pairing constraints, state, errors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from swarm.errors import MatchmakerError, RegistryError
from swarm.matching.matchmaker import (
    GreedyMatchmaker,
    LinUCBMatchmaker,
    Matchmaker,
    RandomMatchmaker,
    greedy_disjoint_pairs,
    improve_pairs,
    orient_by_score,
    orient_pairs,
    pair_dim,
    pair_features,
    ucb_matrix,
)
from swarm.matching.registry import create_matchmaker, restore_matchmaker


def make_matchmaker(kind: str, dim: int, *, lam: float = 1.0, beta0: float = 1.0,
                    seed: int = 0, **params: Any) -> Matchmaker:
    """A built-in matchmaker with explicit parameters (the registry builds them from settings)."""
    if kind == "linucb":
        return LinUCBMatchmaker(dim, lam=lam, beta0=beta0, seed=seed, **params)
    if kind == "greedy":
        return GreedyMatchmaker(dim, lam=lam, seed=seed, **params)
    assert kind == "random", kind
    return RandomMatchmaker(dim, seed=seed)


def _profiles(n: int, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"agent{i:03d}": rng.uniform(-1.0, 1.0, dim) for i in range(n)}


def _trained(kind: str = "linucb", n: int = 12, dim: int = 4, updates: int = 40,
             seed: int = 0) -> tuple[LinUCBMatchmaker, dict[str, np.ndarray]]:
    profiles = _profiles(n, dim, seed)
    mm = make_matchmaker(kind, dim, lam=1.0, beta0=0.8, seed=seed)
    assert isinstance(mm, LinUCBMatchmaker)
    rng = np.random.default_rng(seed + 100)
    ids = sorted(profiles)
    for _ in range(updates):
        i, j = rng.choice(len(ids), 2, replace=False)
        mm.update((ids[i], ids[j]), profiles, float(rng.normal()))
    return mm, profiles


def _reference_greedy(score: np.ndarray, k: int) -> list[tuple[int, int]]:
    """The sequential definition: scan pairs by decreasing score, keep free ones."""
    n = score.shape[0]
    rows, cols = np.triu_indices(n, 1)
    vals = score[rows, cols]
    free, out = np.ones(n, dtype=bool), []
    for t in np.argsort(-vals, kind="stable"):
        if len(out) == k or not np.isfinite(vals[t]):
            break
        if free[rows[t]] and free[cols[t]]:
            out.append((int(rows[t]), int(cols[t])))
            free[rows[t]] = free[cols[t]] = False
    return out


# -- features and scores ---------------------------------------------------------------


def test_pair_features_are_symmetric_and_sized() -> None:
    rng = np.random.default_rng(1)
    for dim in (1, 3, 8):
        p, q = rng.normal(size=dim), rng.normal(size=dim)
        x = pair_features(p, q)
        assert x.shape == (pair_dim(dim),)
        assert np.array_equal(x, pair_features(q, p))
        assert x[0] == 1.0


def test_score_matrix_matches_explicit_formula_and_is_symmetric() -> None:
    mm, profiles = _trained(n=10, dim=3, updates=60)
    ids, score = mm.scores(profiles, round=3)
    coef = 0.8 / np.sqrt(4)
    for i in range(len(ids)):
        for j in range(len(ids)):
            if i == j:
                assert score[i, j] == -np.inf
                continue
            x = pair_features(profiles[ids[i]], profiles[ids[j]])
            expected = mm.theta @ x + coef * np.sqrt(x @ mm.a_inv @ x)
            assert score[i, j] == pytest.approx(expected, abs=1e-9)
    assert np.array_equal(score, score.T)


def test_select_is_the_same_whatever_the_profile_order() -> None:
    mm, profiles = _trained()
    twin = LinUCBMatchmaker.from_state(mm.state())
    reordered = dict(reversed(list(profiles.items())))
    assert mm.select(profiles, 6, 2) == twin.select(reordered, 6, 2)


def test_update_is_symmetric_in_the_pair() -> None:
    profiles = _profiles(4, 3)
    one, two = LinUCBMatchmaker(3, seed=0), LinUCBMatchmaker(3, seed=0)
    one.update(("agent000", "agent001"), profiles, 0.7)
    two.update(("agent001", "agent000"), profiles, 0.7)
    assert np.array_equal(one.a, two.a) and np.array_equal(one.a_inv, two.a_inv)
    assert np.array_equal(one.b, two.b)


# -- Sherman-Morrison -------------------------------------------------------------------


@pytest.mark.parametrize("reinvert_every", [0, 1000])
def test_sherman_morrison_tracks_the_true_inverse_over_10000_updates(reinvert_every: int) -> None:
    dim = 4
    profiles = _profiles(30, dim, seed=5)
    ids = sorted(profiles)
    mm = LinUCBMatchmaker(dim, lam=1.0, seed=0, reinvert_every=reinvert_every)
    rng = np.random.default_rng(6)
    worst = 0.0
    for step in range(1, 10_001):
        i, j = rng.choice(len(ids), 2, replace=False)
        mm.update((ids[i], ids[j]), profiles, float(rng.normal()))
        if step % 500 == 0 or step in (1, 2, 3, 10, 100):
            worst = max(worst, float(np.abs(mm.a_inv - np.linalg.inv(mm.a)).max()))
    assert worst < 1e-6
    assert mm.updates == 10_000
    # A itself is exactly lam*I + sum x x^T
    assert np.allclose(mm.a, mm.a.T)


def test_theta_is_the_ridge_solution() -> None:
    mm, profiles = _trained(updates=80)
    assert np.allclose(mm.theta, np.linalg.solve(mm.a, mm.b), atol=1e-9)


def test_linucb_learns_a_linear_pair_reward() -> None:
    dim = 3
    profiles = _profiles(20, dim, seed=2)
    ids = sorted(profiles)
    theta = np.random.default_rng(3).normal(size=pair_dim(dim))
    mm = LinUCBMatchmaker(dim, lam=1e-4, seed=0)
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            x = pair_features(profiles[ids[i]], profiles[ids[j]])
            for _ in range(3):
                mm.update((ids[i], ids[j]), profiles, float(theta @ x))
    assert np.allclose(mm.theta, theta, atol=1e-3)


# -- pairing ------------------------------------------------------------------------------


def test_greedy_pairing_equals_the_sequential_definition() -> None:
    rng = np.random.default_rng(4)
    for trial in range(60):
        n = int(rng.integers(2, 120))
        score = rng.normal(size=(n, n))
        score = score + score.T
        np.fill_diagonal(score, -np.inf)
        if trial % 3 == 0:  # some agents that may pair with nobody
            dead = rng.random(n) < 0.3
            score[dead, :] = -np.inf
            score[:, dead] = -np.inf
        k = int(rng.integers(0, n // 2 + 2))
        got = greedy_disjoint_pairs(score, k, np.random.default_rng(0))
        assert [(i, j) for i, j, _ in got] == _reference_greedy(score, k)


@pytest.mark.parametrize("shape", ["hub", "ties"])
def test_greedy_pairing_is_exact_when_the_top_tier_is_not_enough(shape: str) -> None:
    # a per-agent level dominates ("hub"): the top 8n pairs pair only the best agents,
    # so the remaining pairs go through the score-range buckets
    rng = np.random.default_rng(5)
    n = 300
    level = rng.normal(size=n)
    score = level[:, None] + level[None, :] + 0.01 * rng.normal(size=(n, n))
    if shape == "ties":
        score = np.round(score, 1)
    score = np.triu(score, 1)
    score = score + score.T
    np.fill_diagonal(score, -np.inf)
    got = greedy_disjoint_pairs(score, n // 2, np.random.default_rng(0))
    assert len(got) == n // 2
    assert len({a for i, j, _ in got for a in (i, j)}) == n
    values = [s for _, _, s in got]
    assert values == sorted(values, reverse=True)
    if shape == "hub":
        assert [(i, j) for i, j, _ in got] == _reference_greedy(score, n // 2)
    else:  # ties: a greedy scan in some order of equal scores, same seed same pairs
        assert got == greedy_disjoint_pairs(score, n // 2, np.random.default_rng(0))
        free = np.ones(n, dtype=bool)
        for i, j, s in got:  # no free pair ever beat the pair taken
            rest = score[np.ix_(free, free)]
            assert s == rest.max()
            free[i] = free[j] = False


def test_improve_pairs_never_lowers_the_total_and_keeps_the_agents() -> None:
    rng = np.random.default_rng(8)
    for _ in range(20):
        n = int(rng.integers(4, 60))
        score = rng.normal(size=(n, n))
        score = score + score.T
        np.fill_diagonal(score, -np.inf)
        greedy = greedy_disjoint_pairs(score, n // 2, np.random.default_rng(0))
        better = improve_pairs(greedy, score, sweeps=50)
        assert sum(s for _, _, s in better) >= sum(s for _, _, s in greedy) - 1e-9
        assert {a for i, j, _ in better for a in (i, j)} == {a for i, j, _ in greedy for a in (i, j)}
        assert all(score[i, j] == s and i < j for i, j, s in better)


def test_improve_pairs_fixes_a_greedy_trap() -> None:
    # greedy takes (0, 1) = 10 and then must take (2, 3) = 0; (0, 2) + (1, 3) = 18
    score = np.full((4, 4), -np.inf)
    for (i, j), v in {(0, 1): 10.0, (2, 3): 0.0, (0, 2): 9.0, (1, 3): 9.0,
                      (0, 3): 1.0, (1, 2): 1.0}.items():
        score[i, j] = score[j, i] = v
    greedy = greedy_disjoint_pairs(score, 2, np.random.default_rng(0))
    assert [(i, j) for i, j, _ in greedy] == [(0, 1), (2, 3)]
    assert sorted((i, j) for i, j, _ in improve_pairs(greedy, score, 4)) == [(0, 2), (1, 3)]


@pytest.mark.parametrize("kind", ["linucb", "greedy", "random"])
def test_pairs_are_disjoint_and_respect_max_pairs(kind: str) -> None:
    profiles = _profiles(15, 4)
    mm = make_matchmaker(kind, 4, seed=3)
    for max_pairs, expected in [(0, 0), (1, 1), (3, 3), (7, 7), (50, 7)]:
        pairs = mm.select(profiles, max_pairs, 0)
        assert len(pairs) == expected
        agents = [a for pair in pairs for a in pair]
        assert len(agents) == len(set(agents))
        assert all(a != b for a, b in pairs)


@pytest.mark.parametrize("kind", ["linucb", "greedy", "random"])
def test_unavailable_agents_are_never_paired(kind: str) -> None:
    profiles = _profiles(20, 4)
    mm = make_matchmaker(kind, 4, seed=1)
    rng = np.random.default_rng(2)
    for rnd in range(10):
        present = {a: p for a, p in profiles.items() if rng.random() < 0.6}
        pairs = mm.select(present, 10, rnd)
        assert {a for pair in pairs for a in pair} <= set(present)
        assert len(pairs) == len(present) // 2
        for pair in pairs:
            mm.update(pair, present, 0.1)
    assert mm.select({}, 5, 11) == []
    assert mm.select(dict(list(profiles.items())[:1]), 5, 11) == []


def test_ties_are_broken_by_the_seeded_generator() -> None:
    # greedy before any update: every pair scores 0, so the tie order decides everything
    profiles = _profiles(16, 3)
    runs = {seed: [GreedyMatchmaker(3, seed=seed).select(profiles, 8, 0) for _ in range(2)]
            for seed in range(6)}
    assert all(a == b for a, b in runs.values())  # same seed, same pairs
    assert len({tuple(a) for a, _ in runs.values()}) > 1  # other seeds, other pairs
    again = GreedyMatchmaker(3, seed=0)
    first, second = again.select(profiles, 8, 0), again.select(profiles, 8, 0)
    assert first != second  # the generator moves on between rounds


@pytest.mark.parametrize("kind", ["linucb", "greedy", "random"])
def test_a_seed_reproduces_a_whole_run(kind: str) -> None:
    def run(seed: int) -> list[list[tuple[str, str]]]:
        profiles = _profiles(12, 3, seed=9)
        mm = make_matchmaker(kind, 3, seed=seed)
        rewards = np.random.default_rng(10)
        history = []
        for rnd in range(15):
            pairs = mm.select(profiles, 6, rnd)
            for pair in pairs:
                mm.update(pair, profiles, float(rewards.normal()))
            history.append(pairs)
        return history

    assert run(4) == run(4)
    if kind != "linucb":  # LinUCB's scores have no ties here, so its seed changes nothing
        assert run(4) != run(5)


def test_higher_score_teaches() -> None:
    scores = {"a": 0.2, "b": 0.9, "c": 0.2}
    assert orient_by_score(("a", "b"), scores) == ("b", "a")
    assert orient_by_score(("b", "a"), scores) == ("b", "a")
    assert orient_by_score(("c", "a"), scores) == ("a", "c")  # tie: smaller id teaches
    assert orient_pairs([("a", "b"), ("c", "a")], scores) == [("b", "a"), ("a", "c")]


# -- state ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linucb", "greedy", "random"])
def test_state_round_trips_exactly_through_json(kind: str) -> None:
    profiles = _profiles(14, 3, seed=2)
    mm = make_matchmaker(kind, 3, lam=0.5, beta0=1.5, seed=8)
    rewards = np.random.default_rng(3)
    for rnd in range(5):
        for pair in mm.select(profiles, 7, rnd):
            mm.update(pair, profiles, float(rewards.normal()))
    restored = restore_matchmaker(json.loads(json.dumps(mm.state())))
    assert type(restored) is type(mm)
    assert restored.state() == mm.state()
    for rnd in range(5, 12):
        chosen = mm.select(profiles, 7, rnd)
        assert restored.select(profiles, 7, rnd) == chosen
        for pair in chosen:
            reward = float(rewards.normal())
            mm.update(pair, profiles, reward)
            restored.update(pair, profiles, reward)
    assert restored.state() == mm.state()
    if isinstance(mm, LinUCBMatchmaker) and isinstance(restored, LinUCBMatchmaker):
        assert np.array_equal(mm.a_inv, restored.a_inv)


def test_factory_and_protocol() -> None:
    for kind, cls in [("linucb", LinUCBMatchmaker), ("greedy", GreedyMatchmaker),
                      ("random", RandomMatchmaker)]:
        mm = make_matchmaker(kind, 5, lam=2.0, beta0=0.5, seed=1)
        assert type(mm) is cls
        assert isinstance(mm, Matchmaker)
    linucb = make_matchmaker("linucb", 5, lam=2.0, beta0=0.5, seed=1, refine=0)
    assert isinstance(linucb, LinUCBMatchmaker)
    assert (linucb.lam, linucb.beta0, linucb.refine) == (2.0, 0.5, 0)
    greedy = make_matchmaker("greedy", 5, beta0=3.0)
    assert isinstance(greedy, GreedyMatchmaker) and greedy.beta0 == 0.0
    with pytest.raises(RegistryError, match="ucb"):
        create_matchmaker("ucb", 5)


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linucb", "greedy", "random"])
def test_mismatched_profile_lengths_are_refused(kind: str) -> None:
    mm = make_matchmaker(kind, 4, seed=0)
    profiles = _profiles(6, 4)
    profiles["agent003"] = np.zeros(5)
    with pytest.raises(MatchmakerError, match=r"agent003.*shape \(5,\), expected \(4,\)"):
        mm.select(profiles, 3, 0)
    profiles["agent003"] = np.zeros((2, 2))
    with pytest.raises(MatchmakerError, match="agent003"):
        mm.select(profiles, 3, 0)


@pytest.mark.parametrize("kind", ["linucb", "greedy", "random"])
def test_nan_profiles_are_refused(kind: str) -> None:
    mm = make_matchmaker(kind, 4, seed=0)
    profiles = _profiles(6, 4)
    profiles["agent002"] = np.array([0.0, np.nan, 1.0, 2.0])
    with pytest.raises(MatchmakerError, match="agent002.*NaN"):
        mm.select(profiles, 3, 0)
    with pytest.raises(MatchmakerError, match="agent002.*NaN"):
        mm.update(("agent002", "agent001"), profiles, 0.5)
    profiles["agent002"] = np.array([0.0, np.inf, 1.0, 2.0])
    with pytest.raises(MatchmakerError, match="agent002"):
        mm.select(profiles, 3, 0)


def test_bad_updates_and_arguments_are_refused() -> None:
    mm = LinUCBMatchmaker(4, seed=0)
    profiles = _profiles(4, 4)
    before = mm.state()
    with pytest.raises(MatchmakerError, match="no profile for agent"):
        mm.update(("agent000", "ghost"), profiles, 1.0)
    with pytest.raises(MatchmakerError, match="two different agents"):
        mm.update(("agent000", "agent000"), profiles, 1.0)
    with pytest.raises(MatchmakerError, match="not a finite number"):
        mm.update(("agent000", "agent001"), profiles, float("nan"))
    with pytest.raises(MatchmakerError, match="shape"):
        mm.update(("agent000", "agent001"), {**profiles, "agent001": np.zeros(3)}, 1.0)
    assert mm.state() == before  # nothing half-applied
    with pytest.raises(MatchmakerError, match="max_pairs"):
        mm.select(profiles, -1, 0)
    with pytest.raises(MatchmakerError, match="round"):
        mm.select(profiles, 2, -1)
    with pytest.raises(MatchmakerError, match="dim >= 1"):
        LinUCBMatchmaker(0)
    with pytest.raises(MatchmakerError, match="lam > 0"):
        LinUCBMatchmaker(3, lam=0.0)


def test_bad_states_are_refused() -> None:
    mm, _ = _trained()
    good = mm.state()
    with pytest.raises(MatchmakerError, match="expected 'linucb'"):
        LinUCBMatchmaker.from_state({**good, "kind": "greedy"})
    with pytest.raises(MatchmakerError, match="version"):
        LinUCBMatchmaker.from_state({**good, "version": 99})
    with pytest.raises(MatchmakerError, match="'a_inv' has shape"):
        LinUCBMatchmaker.from_state({**good, "a_inv": [[1.0]]})
    with pytest.raises(MatchmakerError, match="'b'"):
        LinUCBMatchmaker.from_state({**good, "b": [float("nan")] * len(good["b"])})
    with pytest.raises(MatchmakerError, match="bad matchmaker state"):
        LinUCBMatchmaker.from_state({k: v for k, v in good.items() if k != "dim"})
    with pytest.raises(MatchmakerError, match="generator state"):
        LinUCBMatchmaker.from_state({**good, "rng": {"state": "x"}})
    with pytest.raises(MatchmakerError, match="'dim' is 'x'"):
        RandomMatchmaker.from_state({**RandomMatchmaker(3).state(), "dim": "x"})
    with pytest.raises(MatchmakerError, match="unknown matchmaker kind"):
        restore_matchmaker({"kind": "oracle"})
    with pytest.raises(MatchmakerError, match="unknown matchmaker kind"):
        restore_matchmaker([])  # type: ignore[arg-type]


def test_ucb_matrix_without_exploration_is_the_mean() -> None:
    mm, profiles = _trained(updates=30)
    ids = sorted(profiles)
    p = np.array([profiles[a] for a in ids])
    score = ucb_matrix(p, mm.theta, mm.a_inv, 0.0)
    x = pair_features(p[0], p[1])
    assert score[0, 1] == pytest.approx(mm.theta @ x, abs=1e-12)
