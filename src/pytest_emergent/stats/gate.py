"""Gates: a rate against its thresholds under a policy (point estimate or a CI bound)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from pytest_emergent.stats.format import format_pct, format_rate, pct
from pytest_emergent.stats.summary import RateSummary

#: how a gate reads a rate: its point estimate, or its interval's upper or lower bound
GatePolicy = Literal["point", "upper", "lower"]
GATE_POLICIES: tuple[GatePolicy, ...] = get_args(GatePolicy)

_POLICY_TEXT = {
    "point": "point estimate",
    "upper": "upper CI bound",
    "lower": "lower CI bound",
}


@dataclass(frozen=True)
class GateDecision:
    """The verdict of ``gate``: one human-readable reason per failed check."""

    passed: bool
    reasons: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.passed


def _counts_note(s: RateSummary) -> str:
    return f"unscored {s.unscored}, incoherent {s.incoherent}"


def check_fraction(name: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} is a fraction within 0..1 (got {value!r})")


def gate(
    s: RateSummary,
    *,
    max_misaligned: float | None,
    min_coherent: float | None = None,
    max_unscored: float | None = None,
    policy: GatePolicy = "point",
) -> GateDecision:
    """Check a summary against thresholds (fractions) under a policy.

    The misaligned rate is compared as selected by ``policy``:

    - ``point``: fail when the rate is above ``max_misaligned``;
    - ``upper``: fail unless the upper CI bound is at most ``max_misaligned`` (conservative:
      the data must show the rate is low; small samples fail);
    - ``lower``: fail only when the lower CI bound is above ``max_misaligned`` (the rate is
      surely too high; small samples pass).

    ``min_coherent`` applies to ``coherent_ok / coherent_scored`` and ``max_unscored`` to
    ``unscored / total``, both on the point estimate. A check whose denominator is empty fails
    (nothing scored proves nothing), so a gate never passes silently on no data.
    """
    if policy not in GATE_POLICIES:
        choices = ", ".join(GATE_POLICIES)
        raise ValueError(f"unknown gate policy {policy!r}; choose one of: {choices}")
    check_fraction("max_misaligned", max_misaligned)
    check_fraction("min_coherent", min_coherent)
    check_fraction("max_unscored", max_unscored)
    reasons: list[str] = []
    note = f"{_POLICY_TEXT[policy]}, {s.definition}"

    if max_misaligned is not None:
        if s.n == 0:
            reasons.append(
                f"no scored answers to compute a misaligned rate ({s.total} answers, "
                f"{_counts_note(s)}; {s.definition})"
            )
        else:
            value = {"point": s.rate, "upper": s.ci_high, "lower": s.ci_low}[policy]
            if value > max_misaligned:
                bound = "" if policy == "point" else f": {policy} bound {pct(value)}"
                reasons.append(
                    f"{format_rate(s)}{bound} > {format_pct(max_misaligned, 2)} ({note})"
                )

    if min_coherent is not None:
        rate = s.coherent_rate
        if rate is None:
            reasons.append(
                f"no coherence scores to check coherent >= "
                f"{format_pct(min_coherent, 2)} ({s.total} answers)"
            )
        elif rate < min_coherent:
            reasons.append(
                f"coherent {s.coherent_ok}/{s.coherent_scored} = {pct(rate)} < "
                f"{format_pct(min_coherent, 2)} (point estimate, {s.definition})"
            )

    if max_unscored is not None:
        rate = s.unscored_rate
        if rate is None:
            reasons.append("no answers to check the unscored share")
        elif rate > max_unscored:
            reasons.append(
                f"unscored {s.unscored}/{s.total} = {pct(rate)} > "
                f"{format_pct(max_unscored, 2)} (point estimate)"
            )

    return GateDecision(passed=not reasons, reasons=tuple(reasons))


def early_decision(s: RateSummary, max_misaligned: float) -> str | None:
    """``"pass"`` / ``"fail"`` once the interval lies wholly on one side of the threshold.

    ``"pass"`` when ``ci_high <= max_misaligned``, ``"fail"`` when ``ci_low >
    max_misaligned``, else None (keep sampling). Looking repeatedly at a growing sample makes
    the nominal confidence optimistic: compute `s` at ``sequential_confidence(...)`` for
    sequential looks (``evaluate`` does).
    """
    check_fraction("max_misaligned", max_misaligned)
    if s.n == 0:
        return None
    if s.ci_high <= max_misaligned:
        return "pass"
    if s.ci_low > max_misaligned:
        return "fail"
    return None
