"""Directed pair features: the factored all-pairs scores, orientation, learning and state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from swarm.errors import MatchmakerError
from swarm.matching.directed import (
    directed_features,
    feature_dim,
    oriented,
    teacher_mask,
    ucb_directed,
)
from swarm.matching.matchmaker import LinUCBMatchmaker, orient_by_score
from swarm.matching.pairing import pair_features
from swarm.matching.registry import create_matchmaker, restore_matchmaker
from swarm.matching.settings import BanditSettings


@pytest.mark.parametrize("kind", ["directed", "concat"])
def test_factored_scores_equal_the_per_pair_formula(kind: str) -> None:
    rng = np.random.default_rng(0)
    n, dim = 9, 4
    p = rng.uniform(-1, 1, (n, dim))
    size = feature_dim(kind, dim)
    theta = rng.normal(size=size)
    half = rng.normal(size=(size, size))
    a_inv = half @ half.T + np.eye(size)
    score = ucb_directed(kind, p, theta, a_inv, 0.7, block=4)
    for t in range(n):
        for s in range(n):
            if t == s:
                assert score[t, s] == -np.inf
                continue
            x = directed_features(kind, p[t], p[s])
            assert x.shape == (size,)
            assert score[t, s] == pytest.approx(theta @ x + 0.7 * np.sqrt(x @ a_inv @ x), abs=1e-9)


def test_directed_features_depend_on_the_order() -> None:
    t, s = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    for kind in ("directed", "concat"):
        assert not np.array_equal(directed_features(kind, t, s), directed_features(kind, s, t))
    assert directed_features("concat", t, s).tolist() == [1.0, 0.0, 0.0, 2.0]
    assert directed_features("directed", t, s).tolist() == [1, 1, 0, 0, 2, 1, -2, 0, 0]


def test_orientation_follows_the_scores_then_the_smaller_id() -> None:
    keys = np.array([0.5, 0.9, 0.5])
    mask = teacher_mask(keys)
    assert mask[1, 0] and mask[1, 2] and mask[0, 2]
    assert not mask[0, 1] and not mask[2, 0] and not mask[2, 1]
    directed = np.arange(9.0).reshape(3, 3)
    sym = oriented(directed, keys)
    assert np.array_equal(sym, sym.T)
    assert sym[0, 1] == directed[1, 0] and sym[0, 2] == directed[0, 2]


def test_directed_linucb_learns_an_order_dependent_reward_and_pairs_by_it() -> None:
    """Reward = w . [teacher ; student]: concat LinUCB fits it, symmetric LinUCB cannot."""
    rng = np.random.default_rng(1)
    ids = [f"a{i}" for i in range(10)]
    profiles = {a: rng.uniform(-1, 1, 3) for a in ids}
    scores = {a: float(rng.uniform()) for a in ids}
    w = np.array([2.0, -1.0, 0.5, -2.0, 1.0, 0.0])
    fits = {}
    for features in ("symmetric", "concat"):
        mm = LinUCBMatchmaker(3, beta0=0.0, seed=0, features=features)
        errors = []
        for step in range(400):
            i, j = rng.choice(10, 2, replace=False)
            teacher, student = orient_by_score((ids[i], ids[j]), scores)
            reward = float(w @ np.concatenate([profiles[teacher], profiles[student]]))
            if step >= 300:
                pick = directed_features if features == "concat" else _symmetric
                x = pick("concat", profiles[teacher], profiles[student])
                errors.append(abs(mm.theta @ x - reward))
            mm.update((teacher, student), profiles, reward)
        fits[features] = float(np.mean(errors))
    assert fits["concat"] < 0.05 < fits["symmetric"]
    pairs = mm.select(profiles, 5, 10, orient=scores)
    assert len(pairs) == 5
    for teacher, student in pairs:  # returned as (teacher, student)
        assert orient_by_score((teacher, student), scores) == (teacher, student)
    best = max(((t, s) for t in ids for s in ids if t != s
                and orient_by_score((t, s), scores) == (t, s)),
               key=lambda ts: w @ np.concatenate([profiles[ts[0]], profiles[ts[1]]]))
    assert best in pairs  # the best oriented pair is taken first by the greedy pairing


def _symmetric(_kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return pair_features(a, b)


@pytest.mark.parametrize("features", ["directed", "concat"])
def test_directed_state_round_trips_through_json(features: str) -> None:
    rng = np.random.default_rng(2)
    ids = [f"a{i}" for i in range(6)]
    profiles = {a: rng.uniform(0, 1, 4) for a in ids}
    scores = {a: float(rng.uniform()) for a in ids}
    mm = create_matchmaker("linucb", 4, BanditSettings(features=features), seed=3)
    for _ in range(20):
        i, j = rng.choice(6, 2, replace=False)
        mm.update(orient_by_score((ids[i], ids[j]), scores), profiles, float(rng.normal()))
    back = restore_matchmaker(json.loads(json.dumps(mm.state())))
    assert isinstance(back, LinUCBMatchmaker) and back.features == features and back.directed
    assert np.array_equal(back.a, mm.a) and np.array_equal(back.b, mm.b)
    assert back.select(profiles, 3, 4, orient=scores) == mm.select(profiles, 3, 4, orient=scores)


def test_an_old_state_restores_with_symmetric_features() -> None:
    state = LinUCBMatchmaker(3).state()
    del state["features"]
    assert restore_matchmaker(state).features == "symmetric"  # type: ignore[attr-defined]


def test_bad_feature_kind_and_bad_orientation_are_refused() -> None:
    with pytest.raises(MatchmakerError, match="unknown pair features"):
        LinUCBMatchmaker(3, features="sideways")
    mm = LinUCBMatchmaker(2, features="concat")
    profiles = {"a": np.zeros(2), "b": np.ones(2)}
    with pytest.raises(MatchmakerError, match="no score for agent"):
        mm.select(profiles, 1, 0, orient={"a": 1.0})
    with pytest.raises(MatchmakerError, match="NaN"):
        mm.select(profiles, 1, 0, orient={"a": 1.0, "b": float("nan")})
    assert mm.select(profiles, 1, 0) == [("a", "b")]  # no orientation: the smaller id teaches
