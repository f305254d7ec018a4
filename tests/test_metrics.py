"""Metrics against hand-computed examples (londi.evaluation.metrics)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from londi.evaluation.metrics import (
    ROLES,
    EpisodeStats,
    apgr,
    bootstrap_ci,
    compute_saving,
    cpt,
    oracle_calls_at_success,
    oracle_ratio,
    performance_curve,
    pgr,
    pgr_curve,
    summarize,
    summarize_seeds,
)


def ep(success, ret=0.0, steps=10, quick=None, deep=0, seconds=None, **kw) -> EpisodeStats:
    return EpisodeStats(
        success=success,
        episode_return=ret,
        steps=steps,
        quick_calls=steps if quick is None else quick,
        deepthink_calls=deep,
        device_seconds=seconds or {},
        **kw,
    )


# ------------------------------------------------------------------ EpisodeStats


def test_episode_stats_fills_roles_and_totals():
    e = ep(True, 1.5, steps=4, deep=2, seconds={"quick": 0.5, "deepthink": 2.0})
    assert e.device_seconds == {"quick": 0.5, "deepthink": 2.0, "switch": 0.0}
    assert e.total_device_seconds == pytest.approx(2.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": -1}, "steps"),
        ({"deep": 11}, "at most once per step"),
        ({"seconds": {"big": 1.0}}, "valid roles: quick, deepthink, switch"),
        ({"seconds": {"quick": -0.1}}, "device_seconds"),
        ({"ret": float("nan")}, "finite"),
        ({"quick_oracle_disagreements": -2}, "quick_oracle_disagreements"),
        ({"steps": 2.5}, "steps"),
    ],
)
def test_episode_stats_rejects_bad_values(kwargs, match):
    base = {"success": True}
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ep(**base)


def test_episode_stats_is_keyword_only():
    with pytest.raises(TypeError):
        EpisodeStats(True, 1.0, 3, 3, 0)  # type: ignore[misc]


def test_episode_stats_round_trip_uses_return_key():
    e = ep(False, -2.0, steps=7, deep=3, seconds={"switch": 0.1}, quick_oracle_disagreements=2)
    d = e.to_dict()
    assert d["return"] == -2.0 and "episode_return" not in d
    assert d["quick_oracle_disagreements"] == 2 and "taken_oracle_disagreements" not in d
    assert EpisodeStats.from_dict(d) == e
    # a "total" key, as in the results schema, is recomputed, not rejected
    d["device_seconds"]["total"] = 99.0
    assert EpisodeStats.from_dict(d).total_device_seconds == pytest.approx(0.1)


# ------------------------------------------------------------------ bootstrap


def test_bootstrap_constant_and_single_values_give_a_point_interval():
    assert bootstrap_ci([0.7] * 9, seed=3) == (pytest.approx(0.7), pytest.approx(0.7))
    assert bootstrap_ci([2.0], seed=3) == (2.0, 2.0)


def test_bootstrap_bounds_of_a_small_bernoulli_sample():
    # Mean of 4 draws from [0, 0, 0, 1] is k/4 with k ~ Binomial(4, 1/4):
    # P(k = 0) = 0.316 > 2.5%, so the lower bound is 0; P(k = 4) = 0.004 < 2.5% < P(k >= 3) = 0.051,
    # so the upper bound is 3/4.
    assert bootstrap_ci([0, 0, 0, 1], seed=0) == (0.0, 0.75)
    # Two values: means 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4 -> the interval is [0, 1].
    assert bootstrap_ci([0, 1], seed=1) == (0.0, 1.0)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    a = bootstrap_ci(x, seed=5)
    assert a == bootstrap_ci(x, seed=5)
    assert a != bootstrap_ci(x, seed=6)
    lo, hi = a
    assert lo < x.mean() < hi
    # the width is close to the normal-theory one, 2 * 1.96 * sd / sqrt(n)
    assert hi - lo == pytest.approx(2 * 1.96 * x.std() / np.sqrt(x.size), rel=0.15)
    # a wider confidence level gives a wider interval
    lo99, hi99 = bootstrap_ci(x, seed=5, confidence=0.99)
    assert lo99 < lo and hi99 > hi


def test_bootstrap_many_episodes_uses_blocks():
    x = np.arange(5000, dtype=float)
    lo, hi = bootstrap_ci(x, seed=0, n_resamples=600)
    assert lo < 2499.5 < hi


@pytest.mark.parametrize(
    "values, kwargs",
    [([], {}), ([1.0, float("inf")], {}), ([1.0], {"confidence": 1.0}), ([1.0], {"n_resamples": 0})],
)
def test_bootstrap_rejects_bad_input(values, kwargs):
    with pytest.raises(ValueError):
        bootstrap_ci(values, seed=0, **kwargs)


# ------------------------------------------------------------------ summarize


def test_summarize_hand_example():
    episodes = [
        ep(True, 1.0, steps=10, deep=0, seconds={"quick": 1.0}, quick_oracle_disagreements=1),
        ep(True, 0.5, steps=10, deep=5, seconds={"quick": 1.0, "deepthink": 5.0},
           quick_oracle_disagreements=3),
        ep(False, 0.0, steps=20, deep=10, seconds={"quick": 2.0, "deepthink": 10.0, "switch": 1.0},
           quick_oracle_disagreements=4),
        ep(True, 0.5, steps=40, deep=5, seconds={"quick": 4.0, "deepthink": 5.0, "switch": 1.0},
           quick_oracle_disagreements=0),
    ]
    s = summarize(episodes, seed=0)
    assert s["success"] == 0.75
    assert s["return"] == 0.5
    assert s["steps"] == 20.0
    assert s["quick_calls_per_episode"] == 20.0
    # ratio of sums 20 / 80, not the mean of per-episode fractions (0.28125)
    assert s["deepthink_call_frac"] == 0.25
    assert s["deepthink_calls_per_episode"] == 5.0
    assert s["max_deepthink_calls"] == 10 and isinstance(s["max_deepthink_calls"], int)
    assert s["device_seconds"] == {"quick": 2.0, "deepthink": 5.0, "switch": 0.5, "total": 7.5}
    assert s["episodes"] == 4
    assert s["quick_oracle_disagreements_per_episode"] == 2.0
    assert "taken_oracle_disagreements_per_episode" not in s  # not recorded on every episode
    assert s["success_ci"] == list(bootstrap_ci([1, 1, 0, 1], seed=0))
    assert s["return_ci"] == list(bootstrap_ci([1.0, 0.5, 0.0, 0.5], seed=0))
    assert s["success_ci"][0] <= s["success"] <= s["success_ci"][1]
    assert "per_episode" not in s
    with_eps = summarize(episodes, seed=0, include_episodes=True)
    assert [EpisodeStats.from_dict(d) for d in with_eps["per_episode"]] == episodes


def test_summarize_edge_cases():
    with pytest.raises(ValueError, match="empty"):
        summarize([], seed=0)
    s = summarize([ep(False, steps=0, quick=0)], seed=0)
    assert math.isnan(s["deepthink_call_frac"])
    assert s["success_ci"] == [0.0, 0.0]


def test_summarize_seeds_pools_episodes_in_seed_order():
    a = [ep(True, 1.0, deep=2), ep(False, 0.0, deep=4)]
    b = [ep(True, 1.0, steps=30, deep=3)]
    pooled = summarize_seeds({7: b, 3: a}, seed=1)
    assert pooled["seeds"] == [3, 7]
    assert pooled["success"] == pytest.approx(2 / 3)
    assert pooled["deepthink_call_frac"] == pytest.approx(9 / 50)
    expected = summarize(a + b, seed=1)
    assert {k: v for k, v in pooled.items() if k != "seeds"} == expected
    assert summarize_seeds({3: a, 7: b}, seed=1) == pooled
    with pytest.raises(ValueError):
        summarize_seeds({}, seed=0)


# ------------------------------------------------------------------ saving, PGR, APGR, CPT

Q, D = 0.25, 0.75  # exact in binary: the hand computations below are exact


def test_compute_saving():
    assert compute_saving(2.0, 8.0) == 0.75
    assert compute_saving(8.0, 8.0) == 0.0
    assert compute_saving(10.0, 8.0) == -0.25
    assert math.isnan(compute_saving(1.0, 0.0))


def test_pgr_values_and_zero_gap():
    assert pgr(0.5, quick_perf=Q, deepthink_perf=D) == 0.5
    assert pgr(Q, quick_perf=Q, deepthink_perf=D) == 0.0
    assert pgr(D, quick_perf=Q, deepthink_perf=D) == 1.0
    assert pgr(1.0, quick_perf=Q, deepthink_perf=D) == 1.5
    assert pgr(0.0, quick_perf=Q, deepthink_perf=D) == -0.5
    assert math.isnan(pgr(0.5, quick_perf=0.5, deepthink_perf=0.5))


def test_performance_curve_adds_endpoints_keeps_own_measurements_and_averages_ties():
    xs, ys = performance_curve([(0.5, 0.5), (0.25, 0.5)], quick_perf=Q, deepthink_perf=D)
    assert xs.tolist() == [0.0, 0.25, 0.5, 1.0] and ys.tolist() == [Q, 0.5, 0.5, D]
    # the method's own measurement at 0 replaces the endpoint; ties are averaged
    xs, ys = performance_curve([(0.0, 0.375), (0.5, 0.5), (0.5, 0.625)], quick_perf=Q, deepthink_perf=D)
    assert xs.tolist() == [0.0, 0.5, 1.0] and ys.tolist() == [0.375, 0.5625, D]
    with pytest.raises(ValueError, match="outside"):
        performance_curve([(1.5, 0.5)], quick_perf=Q, deepthink_perf=D)
    with pytest.raises(ValueError, match="at least one"):
        performance_curve([], quick_perf=Q, deepthink_perf=D)


def test_apgr_hand_example():
    # PGR curve: (0, 0), (0.25, 0.5), (0.5, 0.75), (1, 1).
    # Trapezoids: 0.25 * 0.25 + 0.25 * 0.625 + 0.5 * 0.875 = 0.0625 + 0.15625 + 0.4375
    pts = [(0.5, 0.625), (0.25, 0.5)]
    assert apgr(pts, quick_perf=Q, deepthink_perf=D) == 0.65625
    # RouteLLM's formula on the same curve: (AUC - weak AUC) / (strong AUC - weak AUC)
    xs, ys = performance_curve(pts, quick_perf=Q, deepthink_perf=D)
    auc = np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2)
    assert apgr(pts, quick_perf=Q, deepthink_perf=D) == pytest.approx((auc - Q) / (D - Q))


def test_apgr_reference_shapes():
    # on the straight line between the two models: 0.5
    assert apgr([(0.5, 0.5)], quick_perf=Q, deepthink_perf=D) == 0.5
    # DEEPTHINK's performance with no calls: 1
    assert apgr([(0.0, D)], quick_perf=Q, deepthink_perf=D) == 1.0
    # no better than QUICK until the end: 0.5 * area of the last triangle
    assert apgr([(0.5, Q)], quick_perf=Q, deepthink_perf=D) == 0.25
    assert math.isnan(apgr([(0.5, 0.5)], quick_perf=0.5, deepthink_perf=0.5))
    xs, ps = pgr_curve([(0.5, 0.5)], quick_perf=0.5, deepthink_perf=0.5)
    assert np.isnan(ps).all() and xs.tolist() == [0.0, 0.5, 1.0]


def test_cpt_hand_example():
    pts = [(0.25, 0.5), (0.5, 0.625)]  # PGR (0.25, 0.5), (0.5, 0.75)
    kw = {"quick_perf": Q, "deepthink_perf": D}
    assert cpt(pts, 0.2, **kw) == pytest.approx(0.1)  # 0.25 * 0.2 / 0.5
    assert cpt(pts, 0.5, **kw) == 0.25
    assert cpt(pts, 0.8, **kw) == pytest.approx(0.6)  # 0.5 + 0.5 * 0.05 / 0.25
    assert cpt(pts, 0.95, **kw) == pytest.approx(0.9)
    assert cpt(pts, 1.0, **kw) == 1.0
    assert cpt(pts, 0.0, **kw) == 0.0
    assert math.isnan(cpt(pts, 1.01, **kw))  # never reached
    assert math.isnan(cpt(pts, 0.5, quick_perf=0.5, deepthink_perf=0.5))


def test_cpt_takes_the_first_crossing_of_a_non_monotone_curve():
    kw = {"quick_perf": 0.0, "deepthink_perf": 1.0}  # perf == PGR
    pts = [(0.2, 0.6), (0.4, 0.4), (0.6, 0.9)]
    assert cpt(pts, 0.5, **kw) == pytest.approx(0.2 * 0.5 / 0.6)
    assert cpt(pts, 0.8, **kw) == pytest.approx(0.4 + 0.2 * 0.4 / 0.5)
    # a curve that starts above the target reaches it at 0
    assert cpt([(0.0, 0.7)], 0.5, **kw) == 0.0
    # a method that beats DEEPTHINK can reach targets above 100%
    assert cpt([(0.5, 1.25)], 1.1, **kw) == pytest.approx(0.5 * 1.1 / 1.25)


# ------------------------------------------------------------------ oracle ratio


def test_oracle_calls_at_success_interpolates_from_quick():
    kw = {"oracle_success": 0.9, "oracle_calls_per_episode": 7.0, "quick_success": 0.2}
    assert oracle_calls_at_success(0.55, **kw) == pytest.approx(3.5)
    assert oracle_calls_at_success(0.9, **kw) == pytest.approx(7.0)
    assert oracle_calls_at_success(0.1, **kw) == 0.0
    assert math.isnan(oracle_calls_at_success(0.95, **kw))
    no_better = {"oracle_success": 0.2, "oracle_calls_per_episode": 3.0, "quick_success": 0.2}
    assert math.isnan(oracle_calls_at_success(0.5, **no_better))


def test_oracle_ratio():
    assert oracle_ratio(6.0, 3.0) == 2.0
    matched = oracle_ratio(7.0, 7.0, success=0.55, oracle_success=0.9, quick_success=0.2)
    assert matched == pytest.approx(2.0)  # the oracle needs 3.5 calls for success 0.55
    assert oracle_ratio(3.0, 7.0, success=0.1, oracle_success=0.9, quick_success=0.2) == math.inf
    assert math.isnan(oracle_ratio(0.0, 7.0, success=0.1, oracle_success=0.9, quick_success=0.2))
    assert math.isnan(oracle_ratio(3.0, 7.0, success=0.95, oracle_success=0.9, quick_success=0.2))
    with pytest.raises(ValueError, match="all of"):
        oracle_ratio(3.0, 7.0, success=0.5)


def test_roles_match_the_results_schema():
    assert ROLES == ("quick", "deepthink", "switch")
