"""Confidence intervals and tests for rates: Wilson, Newcombe, Fisher, two-proportion z."""

from __future__ import annotations

import math
from statistics import NormalDist


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1 (got {confidence!r})")


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval for ``k`` successes in ``n`` trials.

    With ``p = k/n`` and ``z`` the normal quantile for the confidence level, the bounds are
    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``. Unlike the normal (Wald)
    interval it stays inside [0, 1] and is not degenerate at ``k = 0`` or ``k = n``, which are
    the common cases when a model is (nearly) never misaligned. ``n == 0`` gives ``(0, 1)``:
    nothing is known.
    """
    check_confidence(confidence)
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n (got k={k}, n={n})")
    if n == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    return wilson_bounds(k / n, n, z)


def wilson_bounds(p: float, n: float, z: float) -> tuple[float, float]:
    """The Wilson bounds of a rate `p` over `n` (> 0, possibly an effective, fractional size)
    at critical value `z`."""
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n)) / (1.0 + z2n)
    # The exact bounds are 0 at p = 0 and 1 at p = 1; pin them so rounding cannot move them.
    low = 0.0 if p == 0.0 else max(0.0, centre - half)
    high = 1.0 if p == 1.0 else min(1.0, centre + half)
    return (low, high)


def newcombe_interval(
    k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Two-sided Newcombe hybrid score interval for ``k1/n1 - k2/n2``.

    With ``(l_i, u_i)`` the Wilson intervals of the two rates at the same confidence, the
    bounds are ``d - sqrt((p1 - l1)² + (u2 - p2)²)`` and ``d + sqrt((u1 - p1)² + (p2 -
    l2)²)``. An empty arm (``n == 0``) gives ``(-1, 1)``.
    """
    check_confidence(confidence)
    if n1 == 0 or n2 == 0:
        for k, n in ((k1, n1), (k2, n2)):
            if n < 0 or k < 0 or k > n:
                raise ValueError(f"need 0 <= k <= n (got k={k}, n={n})")
        return (-1.0, 1.0)
    l1, u1 = wilson_interval(k1, n1, confidence)
    l2, u2 = wilson_interval(k2, n2, confidence)
    p1, p2 = k1 / n1, k2 / n2
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (max(-1.0, low), min(1.0, high))


def fisher_one_sided(k1: int, n1: int, k2: int, n2: int) -> float:
    """Exact one-sided p-value of Fisher's test for ``rate1 > rate2``.

    Conditional on the total number of successes ``K = k1 + k2``, ``k1`` follows a
    hypergeometric law under equal rates; the p-value is ``P(X >= k1)``, computed with exact
    integers (``math.comb``), so it is exact for any sample size.
    """
    for k, n in ((k1, n1), (k2, n2)):
        if n < 0 or k < 0 or k > n:
            raise ValueError(f"need 0 <= k <= n (got k={k}, n={n})")
    total, hits = n1 + n2, k1 + k2
    if n1 == 0 or n2 == 0:
        return 1.0
    denominator = math.comb(total, n1)
    top = min(hits, n1)
    numerator = sum(math.comb(hits, x) * math.comb(total - hits, n1 - x)
                    for x in range(k1, top + 1))
    return numerator / denominator


def two_proportion_z(
    k1: int, n1: int, k2: int, n2: int, margin: float = 0.0
) -> tuple[float, float]:
    """``(z, one-sided p)`` for ``rate1 - rate2 > margin`` (a normal approximation).

    ``margin == 0`` uses the pooled standard error (the classic test of equal rates); a
    non-zero margin uses the unpooled one, since the null then has unequal rates. A zero
    standard error (both rates 0 or both 1) gives ``p = 0`` when the difference exceeds the
    margin and ``p = 1`` otherwise.
    """
    if n1 <= 0 or n2 <= 0:
        return (0.0, 1.0)
    p1, p2 = k1 / n1, k2 / n2
    if margin == 0.0:
        pooled = (k1 + k2) / (n1 + n2)
        se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    else:
        se = math.sqrt(p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2)
    diff = p1 - p2 - margin
    if se == 0.0:
        return (math.inf if diff > 0 else 0.0, 0.0 if diff > 0 else 1.0)
    z = diff / se
    return (z, 1.0 - NormalDist().cdf(z))
