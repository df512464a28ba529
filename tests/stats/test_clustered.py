"""The clustered interval of a pooled rate: hand-computed values, and coverage by simulation on
correlated (beta-binomial) clusters with known truth, where the plain Wilson interval
under-covers."""

from __future__ import annotations

import math
import random

import pytest

from pytest_emergent.stats import clustered_interval, t_quantile, wilson_interval
from pytest_emergent.stats.clustered import MIN_CLUSTERS


def test_t_quantiles_match_the_tables() -> None:
    # two-sided 95% critical values of Student's t (any table): df 1, 2, 5, 7, 23, 100
    for df, value in ((1, 12.706), (2, 4.303), (5, 2.571), (7, 2.365), (23, 2.069),
                      (100, 1.984)):
        assert t_quantile(0.975, df) == pytest.approx(value, abs=2e-3)


def test_design_effect_by_hand() -> None:
    # 6 questions: 0,0,0,0 of 100 and 30, 30 of 100 -> p = 60/600 = 0.1
    # v = 6/5 * (4 * 10² + 2 * 20²) / 600² = 6/5 * 1200 / 360000 = 0.004
    # plain variance p(1-p)/N = 0.09/600 = 0.00015 -> deff = 26.67, n_eff = 22.5
    r = clustered_interval([(0, 100)] * 4 + [(30, 100)] * 2)
    assert r.rate == pytest.approx(0.1)
    assert r.design_effect == pytest.approx(0.004 / 0.00015)
    assert r.effective_n == pytest.approx(22.5)
    z = t_quantile(0.975, 5)
    n, p = 22.5, 0.1
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (r.low, r.high) == pytest.approx((centre - half, centre + half))
    plain = wilson_interval(60, 600)
    assert r.low < plain[0] and r.high > plain[1]


def test_too_few_questions_or_a_rate_of_zero_is_the_plain_wilson_interval() -> None:
    few = clustered_interval([(3, 50)] * (MIN_CLUSTERS - 1))
    assert few.method == "wilson" and few.design_effect == 1.0
    assert (few.low, few.high) == wilson_interval(3 * (MIN_CLUSTERS - 1), 50 * (MIN_CLUSTERS - 1))
    zero = clustered_interval([(0, 20)] * 10)
    assert zero.method == "wilson" and (zero.low, zero.high) == wilson_interval(0, 200)
    assert clustered_interval([]).high == 1.0


def _coverage(p: float, icc: float, clusters: int, size: int, reps: int, seed: int
              ) -> tuple[float, float, float]:
    """Shares of simulated files whose interval holds the true rate: clustered, Wilson; and
    the clustered interval's share with the truth above its upper bound (a false pass of an
    upper-bound gate at a threshold equal to the truth)."""
    rng = random.Random(seed)
    a, b = p * (1 - icc) / icc, (1 - p) * (1 - icc) / icc
    hit_c = hit_w = above = 0
    for _ in range(reps):
        counts = []
        for _ in range(clusters):
            q = rng.betavariate(a, b)
            counts.append((sum(rng.random() < q for _ in range(size)), size))
        r = clustered_interval(counts)
        hit_c += r.low <= p <= r.high
        above += p > r.high
        low, high = wilson_interval(sum(k for k, _ in counts), clusters * size)
        hit_w += low <= p <= high
    return hit_c / reps, hit_w / reps, above / reps


@pytest.mark.parametrize("p, icc, clusters, size", [
    (0.05, 0.05, 8, 100),   # 8 questions x 100 samples, the published core set's shape
    (0.20, 0.05, 8, 100),
    (0.05, 0.05, 24, 50),
])
def test_clustered_coverage_is_nominal_where_wilson_under_covers(
        p: float, icc: float, clusters: int, size: int) -> None:
    covered, wilson, above = _coverage(p, icc, clusters, size, reps=1500, seed=7)
    assert 0.93 <= covered <= 0.97, covered
    assert wilson < 0.80, wilson
    assert above < 0.06, above
