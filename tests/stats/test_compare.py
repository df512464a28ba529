"""Comparison statistics for mitigation tests, checked against hand-computed numbers.

Reference values: Newcombe (1998), "Interval estimation for the difference between independent
proportions", Statistics in Medicine 17, Table II, method 10 (hybrid score interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from pytest_emergent.stats import (
    RateSummary,
    as_summary,
    assert_increases,
    assert_reduces,
    compare_rates,
    fisher_one_sided,
    newcombe_interval,
    reduces,
    summarize_counts,
    two_proportion_z,
)


@pytest.mark.parametrize(
    ("k1", "n1", "k2", "n2", "low", "high"),
    [
        (56, 70, 48, 80, 0.0524, 0.3339),  # Newcombe's example (a)
        (9, 10, 3, 10, 0.1705, 0.8090),  # example (b)
        (10, 10, 0, 10, 0.6075, 1.0000),  # example (g)
        (0, 10, 0, 10, -0.2775, 0.2775),  # example (h)
    ],
)
def test_newcombe_matches_published_values(
    k1: int, n1: int, k2: int, n2: int, low: float, high: float
) -> None:
    got = newcombe_interval(k1, n1, k2, n2)
    assert got[0] == pytest.approx(low, abs=5e-5)
    assert got[1] == pytest.approx(high, abs=5e-5)


def test_newcombe_is_antisymmetric_and_handles_empty_arms() -> None:
    low, high = newcombe_interval(56, 70, 48, 80)
    assert newcombe_interval(48, 80, 56, 70) == pytest.approx((-high, -low))
    assert newcombe_interval(0, 0, 3, 10) == (-1.0, 1.0)
    with pytest.raises(ValueError):
        newcombe_interval(5, 4, 1, 2)


def test_fisher_one_sided_by_hand() -> None:
    # 3/3 vs 0/3: the only table at least this extreme has probability 1 / C(6, 3)
    assert fisher_one_sided(3, 3, 0, 3) == pytest.approx(1 / 20)
    # 2/3 vs 0/3: K = 2, P(X >= 2) = C(2,2) C(4,1) / C(6,3)
    assert fisher_one_sided(2, 3, 0, 3) == pytest.approx(4 / 20)
    # 1/2 vs 1/2: P(X >= 1) with K = 2, n1 = 2 of N = 4: 1 - C(2,0)C(2,2)/C(4,2) = 5/6
    assert fisher_one_sided(1, 2, 1, 2) == pytest.approx(5 / 6)
    # the wrong direction is never significant
    assert fisher_one_sided(0, 3, 3, 3) == pytest.approx(1.0)
    # large samples stay exact (integers) and tiny
    assert 0 < fisher_one_sided(40, 40, 0, 40) == pytest.approx(1 / math.comb(80, 40))


def test_two_proportion_z_by_hand() -> None:
    # pooled p = 32/80 = 0.4, se = sqrt(0.4 * 0.6 * (1/40 + 1/40)) = sqrt(0.012)
    z, p = two_proportion_z(30, 40, 2, 40)
    assert z == pytest.approx(0.7 / math.sqrt(0.012))
    assert p == pytest.approx(1 - 0.5 * (1 + math.erf(z / math.sqrt(2))), rel=1e-6)
    # with a margin: unpooled se = sqrt(0.75*0.25/40 + 0.05*0.95/40)
    z, _ = two_proportion_z(30, 40, 2, 40, margin=0.5)
    assert z == pytest.approx(0.2 / math.sqrt((0.1875 + 0.0475) / 40))
    assert two_proportion_z(0, 10, 0, 10) == (0.0, 1.0)
    # a zero standard error decides by the sign of the difference
    assert two_proportion_z(10, 10, 10, 10) == (0.0, 1.0)
    assert two_proportion_z(10, 10, 0, 10, margin=0.5)[1] == 0.0
    assert two_proportion_z(1, 0, 0, 10) == (0.0, 1.0)


def test_compare_rates_fields() -> None:
    treated, untreated = summarize_counts(2, 40), summarize_counts(30, 40)
    c = compare_rates(treated, untreated)
    assert c.reduction == pytest.approx(0.7)
    assert (c.ci_low, c.ci_high) == pytest.approx(newcombe_interval(30, 40, 2, 40))
    # the one-sided 95% bound is the lower end of the two-sided 90% interval
    assert c.lower_bound == pytest.approx(newcombe_interval(30, 40, 2, 40, 0.90)[0])
    assert c.ci_low < c.lower_bound < c.reduction
    assert c.p_fisher == pytest.approx(fisher_one_sided(30, 40, 2, 40))


def test_assert_reduces_passes_and_returns_the_comparison() -> None:
    c = assert_reduces(summarize_counts(2, 40), summarize_counts(30, 40), "caps",
                       by_at_least=0.3)
    assert c.reduction == pytest.approx(0.7)
    for method in ("fisher", "z"):
        assert_reduces(summarize_counts(2, 40), summarize_counts(30, 40), method=method)


def test_assert_reduces_message_gives_rates_difference_interval_and_method() -> None:
    with pytest.raises(AssertionError) as info:
        assert_reduces(summarize_counts(12, 40), summarize_counts(16, 40), "caps",
                       labels=("inoculated", "plain"))
    text = str(info.value)
    assert text.splitlines()[0] == (
        "inoculated caps rate is not shown to be lower than plain by more than 0.0 pts "
        "(one-sided Newcombe hybrid-Wilson bound, 95% confidence)"
    )
    assert "inoculated  caps 12/40 = 30.0% [95% CI" in text
    assert "plain       caps 16/40 = 40.0% [95% CI" in text
    low, high = newcombe_interval(16, 40, 12, 40)
    assert f"+10.0 pts [95% CI {low * 100:+.1f} pts to {high * 100:+.1f} pts]" in text
    assert "one-sided 95% lower bound" in text
    assert "Fisher exact" in text and "z-test" in text


def test_margin_decides_when_the_difference_is_significant_but_small() -> None:
    treated, untreated = summarize_counts(10, 100), summarize_counts(30, 100)
    assert reduces(treated, untreated).passed
    assert not reduces(treated, untreated, by_at_least=0.15).passed
    assert not reduces(treated, untreated, by_at_least=0.15, method="z").passed
    with pytest.raises(ValueError, match="Fisher"):
        reduces(treated, untreated, by_at_least=0.1, method="fisher")
    with pytest.raises(ValueError, match="unknown comparison method"):
        reduces(treated, untreated, method="t")
    with pytest.raises(ValueError, match="by_at_least"):
        reduces(treated, untreated, by_at_least=5)


def test_small_samples_and_empty_arms_do_not_pass() -> None:
    # 0/3 vs 3/3: Fisher p = 1/20 = 0.05 is at the level (p <= alpha passes); 0/3 vs 2/3 not
    assert reduces(summarize_counts(0, 3), summarize_counts(3, 3), method="fisher").passed
    assert not reduces(summarize_counts(0, 3), summarize_counts(2, 3), method="fisher").passed
    decision = reduces(summarize_counts(0, 0, unscored=5), summarize_counts(3, 3))
    assert not decision.passed
    assert "no scored answers" in decision.message


def test_assert_increases_mirrors_assert_reduces() -> None:
    steered, base = summarize_counts(25, 40), summarize_counts(1, 40)
    c = assert_increases(steered, base, "caps", labels=("steered", "base"))
    assert c.reduction == pytest.approx(0.6)
    with pytest.raises(AssertionError) as info:
        assert_increases(base, steered, "caps", labels=("random", "steered"))
    first = str(info.value).splitlines()[0]
    assert first.startswith("random caps rate is not shown to be higher than steered")
    assert "random   caps 1/40" in str(info.value)


@dataclass
class _Result:
    summary: RateSummary


def test_as_summary_accepts_results_and_collections() -> None:
    a, b = summarize_counts(1, 10), summarize_counts(3, 20)
    assert as_summary(a) is a
    assert as_summary(_Result(a)) is a
    pooled = as_summary({"q1": _Result(a), "q2": _Result(b)})
    assert (pooled.misaligned, pooled.n) == (4, 30)
    assert as_summary([a, b]).n == 30
    with pytest.raises(TypeError, match="RateSummary"):
        as_summary(0.5)
    with pytest.raises(TypeError):
        as_summary([])
