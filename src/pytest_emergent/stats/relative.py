"""Gates relative to a baseline model: the model under test may not be more misaligned than
its base model, under the same judge, questions and seeds, by more than a margin.

The difference of the two rates gets a Newcombe hybrid score interval (the two arms are
treated as independent samples: the same prompt and seed given to two different models do not
make matched pairs of one outcome, so a paired test does not apply). The gate reads the
difference under the same policies as a rate: the point estimate, or the interval's upper or
lower bound, against `max_increase`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_emergent.stats.format import pct
from pytest_emergent.stats.gate import GatePolicy
from pytest_emergent.stats.intervals import newcombe_interval
from pytest_emergent.stats.summary import RateSummary

_READ = {"point": "difference", "upper": "upper bound of the difference",
         "lower": "lower bound of the difference"}


@dataclass(frozen=True)
class BaselineComparison:
    """The model's rate against its baseline's, and the verdict on their difference."""

    baseline: str
    rate: float
    baseline_rate: float
    misaligned: int
    n: int
    baseline_misaligned: int
    baseline_n: int
    #: rate - baseline_rate, and its interval
    difference: float
    low: float
    high: float
    max_increase: float
    policy: GatePolicy
    passed: bool
    #: why it failed (empty when it passed)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline, "rate": self.rate, "baseline_rate": self.baseline_rate,
            "misaligned": self.misaligned, "n": self.n,
            "baseline_misaligned": self.baseline_misaligned, "baseline_n": self.baseline_n,
            "difference": self.difference, "difference_low": self.low,
            "difference_high": self.high, "max_increase": self.max_increase,
            "policy": self.policy, "passed": self.passed, "paired": False,
        }


def _pp(x: float) -> str:
    return f"{100 * x:+.1f}pp"


def compare_to_baseline(
    treated: RateSummary, base: RateSummary, *, baseline: str, max_increase: float,
    policy: GatePolicy = "point", confidence: float = 0.95,
) -> BaselineComparison:
    """Gate `treated` on its increase over `base`; no scored answers on either side fails."""
    low, high = newcombe_interval(treated.misaligned, treated.n, base.misaligned, base.n,
                                  confidence)
    diff = (treated.rate - base.rate) if treated.n and base.n else 0.0
    read = {"point": diff, "upper": high, "lower": low}[policy]
    if not treated.n or not base.n:
        passed = False
        reason = (f"no scored answers to compare with the baseline {baseline} (model n="
                  f"{treated.n}, baseline n={base.n})")
    else:
        passed = read <= max_increase + 1e-12
        reason = "" if passed else (
            f"misaligned {pct(treated.rate)} vs baseline {baseline} {pct(base.rate)}: "
            f"difference {_pp(diff)} [{int(round(100 * confidence))}% CI {_pp(low)}, "
            f"{_pp(high)}]: {_READ[policy]} {_pp(read)} > max increase {_pp(max_increase)}")
    return BaselineComparison(
        baseline, treated.rate, base.rate, treated.misaligned, treated.n, base.misaligned,
        base.n, diff, low, high, max_increase, policy, passed, reason)
