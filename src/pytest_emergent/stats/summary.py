"""Rate summaries: counts of misaligned / scored / unscored / incoherent answers, pooled."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from pytest_emergent.stats.clustered import clustered_interval
from pytest_emergent.stats.definitions import INCOHERENT, MISALIGNED, UNSCORED, Definition, classify
from pytest_emergent.stats.intervals import wilson_interval


@dataclass(frozen=True)
class RateSummary:
    """Counts, the misaligned rate and its interval for a set of answers."""

    #: answers seen
    total: int
    #: the denominator under the definition
    n: int
    misaligned: int
    #: answers failing the coherence test, whether or not they are in the denominator
    incoherent: int
    #: answers missing a needed score (never counted as 0, never dropped silently)
    unscored: int
    #: answers with a coherence score
    coherent_scored: int
    #: answers passing the definition's coherence test
    coherent_ok: int
    #: misaligned / n, 0.0 when n == 0
    rate: float
    ci_low: float
    ci_high: float
    confidence: float
    #: the definition's label (its name, plus the rule if a cut-off was changed)
    definition: str
    #: "wilson", or "clustered" for a pooled rate whose interval treats questions as clusters
    ci_method: str = "wilson"
    #: a pooled rate's design effect (clustered variance / independent variance); else None
    design_effect: float | None = None

    @property
    def unscored_rate(self) -> float | None:
        """Unscored answers / all answers, None when there are no answers."""
        return self.unscored / self.total if self.total else None

    @property
    def coherent_rate(self) -> float | None:
        """Coherent-enough answers / answers with a coherence score (None without any)."""
        return self.coherent_ok / self.coherent_scored if self.coherent_scored else None


def summarize_counts(
    k: int,
    n: int,
    *,
    total: int | None = None,
    unscored: int = 0,
    incoherent: int = 0,
    coherent_scored: int = 0,
    coherent_ok: int = 0,
    definition: Definition | str = "label",
    confidence: float = 0.95,
) -> RateSummary:
    """A summary from counts, e.g. a categorical judge's flagged label: ``k`` of ``n``.

    ``total`` defaults to ``n + unscored + incoherent``; ``definition`` is recorded by label.
    """
    if isinstance(definition, Definition):
        definition = definition.label
    if total is None:
        total = n + unscored + incoherent
    if min(k, n, total, unscored, incoherent, coherent_scored, coherent_ok) < 0:
        raise ValueError("counts must be non-negative")
    if k > n or n > total or unscored > total or coherent_ok > coherent_scored:
        raise ValueError(
            f"inconsistent counts: k={k}, n={n}, total={total}, unscored={unscored}, "
            f"coherent_ok={coherent_ok}, coherent_scored={coherent_scored}"
        )
    low, high = wilson_interval(k, n, confidence)
    return RateSummary(
        total=total,
        n=n,
        misaligned=k,
        incoherent=incoherent,
        unscored=unscored,
        coherent_scored=coherent_scored,
        coherent_ok=coherent_ok,
        rate=k / n if n else 0.0,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        definition=definition,
    )


def summarize(
    pairs: Iterable[tuple[float | None, float | None]],
    d: Definition,
    confidence: float = 0.95,
) -> RateSummary:
    """Count ``(aligned, coherent)`` score pairs under definition ``d``.

    Unscored answers are out of the denominator and counted in ``unscored``. Incoherent ones
    are counted in ``incoherent`` and are in the denominator only for definitions with
    ``incoherent_in_denominator`` (``organisms``).
    """
    total = k = n = incoherent = unscored = coherent_scored = coherent_ok = 0
    for aligned, coherent in pairs:
        total += 1
        if coherent is not None:
            coherent_scored += 1
            if d.is_coherent(coherent):
                coherent_ok += 1
        verdict = classify(aligned, coherent, d)
        if verdict == UNSCORED:
            unscored += 1
        elif verdict == INCOHERENT:
            incoherent += 1
            if d.incoherent_in_denominator:
                n += 1
        else:
            n += 1
            k += verdict == MISALIGNED
    return summarize_counts(
        k,
        n,
        total=total,
        unscored=unscored,
        incoherent=incoherent,
        coherent_scored=coherent_scored,
        coherent_ok=coherent_ok,
        definition=d.label,
        confidence=confidence,
    )


def merge(
    summaries: Iterable[RateSummary],
    d: Definition | None = None,
    confidence: float | None = None,
    *,
    clustered: bool = False,
) -> RateSummary:
    """Pool summaries (e.g. every question of a file): add the counts, recompute the interval.

    Pooling counts weights each question by its number of answers, as the published runners
    do when they report one rate per set. The summaries must share a definition; ``d`` (or its
    label) is asserted against them when given. ``confidence`` defaults to theirs (0.95 when
    there are none). With ``clustered``, the interval treats each summary as a cluster
    (`clustered_interval`) and the design effect is recorded.
    """
    items = list(summaries)
    labels = {s.definition for s in items}
    if d is not None:
        labels.add(d.label)
    if len(labels) > 1:
        raise ValueError(f"cannot merge rates under different definitions: {sorted(labels)}")
    if confidence is None:
        levels = {s.confidence for s in items}
        if len(levels) > 1:
            raise ValueError(f"pass confidence= to merge mixed levels {sorted(levels)}")
        confidence = levels.pop() if levels else 0.95
    pooled = summarize_counts(
        sum(s.misaligned for s in items),
        sum(s.n for s in items),
        total=sum(s.total for s in items),
        unscored=sum(s.unscored for s in items),
        incoherent=sum(s.incoherent for s in items),
        coherent_scored=sum(s.coherent_scored for s in items),
        coherent_ok=sum(s.coherent_ok for s in items),
        definition=labels.pop() if labels else "label",
        confidence=confidence,
    )
    if not clustered:
        return pooled
    c = clustered_interval([(s.misaligned, s.n) for s in items], confidence)
    return replace(pooled, ci_low=c.low, ci_high=c.high, ci_method=c.method,
                   design_effect=c.design_effect)
