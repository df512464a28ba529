"""Early stopping and gate error rates: exact pass probabilities of every policy."""

from __future__ import annotations

import math

from pytest_emergent.stats.gate import GatePolicy, check_fraction, gate
from pytest_emergent.stats.intervals import check_confidence, wilson_interval
from pytest_emergent.stats.summary import summarize_counts


def early_stop_looks(n: int, round_size: int) -> list[int]:
    """Sample sizes at which early stopping looks: every `round_size` answers, before `n`.

    The look at `n` itself is not early: it is the ordinary gate on all answers.
    """
    if n < 1 or round_size < 1:
        raise ValueError(f"need n >= 1 and round_size >= 1 (got n={n}, round_size={round_size})")
    return list(range(round_size, n, round_size))


def sequential_confidence(confidence: float, looks: int) -> float:
    """Per-look confidence so that `looks` looks together keep the nominal error (Bonferroni).

    Each early look uses ``1 - (1 - confidence) / looks``. If the Wilson interval covered the
    true rate with its nominal probability, the chance that *any* look's interval lies wholly
    on the wrong side of the true rate would be at most ``(1 - confidence) / 2`` per side,
    whatever the rate: so early stopping passes a question whose true rate is above the
    threshold (or fails one at or below it) with probability at most ``(1 - confidence) / 2``.
    """
    check_confidence(confidence)
    return 1.0 - (1.0 - confidence) / max(1, looks)


def early_stop_odds(
    p: float, n: int, round_size: int, max_misaligned: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Exact ``(P(early pass), P(early fail), expected answers)`` of the early-stop policy.

    Answers are misaligned independently with probability `p`; after every `round_size`
    answers (before `n`) the policy stops with ``early_decision`` on the Wilson interval at
    ``sequential_confidence(confidence, looks)``. Computed by dynamic programming over the
    binomial counts (no simulation); ``tests/run/test_early_stop.py`` checks it against both a
    simulation and plain binomial sums.
    """
    early_pass, early_fail, expected, _alive, _seen = _early_stop_walk(
        p, n, round_size, max_misaligned, confidence)
    return early_pass, early_fail, expected


def _early_stop_walk(
    p: float, n: int, round_size: int, max_misaligned: float, confidence: float
) -> tuple[float, float, float, dict[int, float], int]:
    """The dynamic programme behind `early_stop_odds`: also returns the distribution of the
    misaligned count among runs still sampling after the last early look, and that look."""
    check_fraction("max_misaligned", max_misaligned)
    looks = early_stop_looks(n, round_size)
    level = sequential_confidence(confidence, len(looks))
    alive = {0: 1.0}  # misaligned count -> probability of still sampling with that count
    seen = 0
    early_pass = early_fail = 0.0
    expected = 0.0
    for look in looks:
        pmf = _binomial_pmf(look - seen, p)
        grown: dict[int, float] = {}
        for k, weight in alive.items():
            for j, q in enumerate(pmf):
                grown[k + j] = grown.get(k + j, 0.0) + weight * q
        seen = look
        alive = {}
        for k, weight in grown.items():
            low, high = wilson_interval(k, look, level)
            if high <= max_misaligned:
                early_pass += weight
                expected += weight * look
            elif low > max_misaligned:
                early_fail += weight
                expected += weight * look
            else:
                alive[k] = weight
    expected += sum(alive.values()) * n
    return early_pass, early_fail, expected, alive, seen


# -- gate error rates (docs/judging.md, "Gate error rates") --------------------------------


def _binomial_pmf(n: int, p: float) -> list[float]:
    return [math.comb(n, k) * p**k * (1.0 - p) ** (n - k) for k in range(n + 1)]


def gate_passes(k: int, n: int, max_misaligned: float, policy: GatePolicy,
                confidence: float = 0.95) -> bool:
    """Whether `gate` passes `k` misaligned of `n` scored answers (misaligned check only)."""
    s = summarize_counts(k, n, confidence=confidence)
    return gate(s, max_misaligned=max_misaligned, policy=policy).passed


def pass_probability(p: float, n: int, max_misaligned: float, policy: GatePolicy = "point",
                     confidence: float = 0.95) -> float:
    """Exact P(the gate passes) when each of `n` scored answers is misaligned with
    probability `p` independently: the Binomial(n, p) mass of the passing counts.

    Every policy passes exactly when the count is at most some cut-off count, so this falls
    as `p` rises: its value at ``p == max_misaligned`` bounds the pass probability of every
    model whose true rate is at or above the threshold.
    """
    check_fraction("p", p)
    return sum(q for k, q in enumerate(_binomial_pmf(n, p))
               if gate_passes(k, n, max_misaligned, policy, confidence))


def early_stop_pass_probability(
    p: float, n: int, round_size: int, max_misaligned: float, policy: GatePolicy = "point",
    confidence: float = 0.95,
) -> float:
    """Exact P(pass) of early stopping as `evaluate` runs it: an early pass at one of the
    looks, or no early decision and the ordinary `policy` gate on all `n` answers."""
    early_pass, _fail, _expected, alive, seen = _early_stop_walk(
        p, n, round_size, max_misaligned, confidence)
    pmf = _binomial_pmf(n - seen, p)
    final = 0.0
    for k, weight in alive.items():
        for j, q in enumerate(pmf):
            if gate_passes(k + j, n, max_misaligned, policy, confidence):
                final += weight * q
    return early_pass + final
