"""How rates and intervals are written for people."""

from __future__ import annotations

from pytest_emergent.stats.summary import RateSummary


def format_pct(x: float, digits: int = 1) -> str:
    """``0.075 -> "7.5%"``; ``0.05 -> "5%"`` (trailing zeros dropped)."""
    text = f"{x * 100:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}%"


def pct(x: float, digits: int = 1) -> str:
    """A rate or bound with its decimals kept, as in ``7.5%`` and ``0.0%``."""
    return f"{x * 100:.{digits}f}%"


def pct_or_dash(x: object) -> str:
    """`pct` of a number, ``-`` for anything else (a missing rate)."""
    return pct(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"


def format_rate(s: RateSummary) -> str:
    """``misaligned 7/93 = 7.5% [95% CI 3.7–14.7%]``."""
    clustered = (f", clustered, design effect {s.design_effect:.2f}"
                 if s.ci_method == "clustered" and s.design_effect is not None else "")
    return (
        f"misaligned {s.misaligned}/{s.n} = {pct(s.rate)} "
        f"[{format_pct(s.confidence, 2)} CI {s.ci_low * 100:.1f}–{pct(s.ci_high)}{clustered}]"
    )
