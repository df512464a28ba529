"""How much a rate hangs on its cut-offs: judges emit few distinct values, so scores pile up
near a cut and a one-point move of it can change the headline rate. For one set of
(aligned, coherent) score pairs: the rate under every shipped definition, under the active
cut-offs moved by ±5 and ±10 points, the scores within 2 points of each cut, and which ±5
moves would flip a gate's verdict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_emergent.stats.definitions import DEFINITIONS, Definition, get_definition
from pytest_emergent.stats.gate import GatePolicy, gate
from pytest_emergent.stats.summary import summarize

#: the cut-off moves reported, in points
SHIFTS = (-10, -5, 5, 10)
#: a score this close to a cut counts as sitting on it
NEAR = 2.0
#: moves within this many points that flip a verdict are flagged
FLIP_WITHIN = 5


@dataclass(frozen=True)
class Sensitivity:
    """A rate's dependence on the definition and its cut-offs."""

    #: definition name -> (misaligned, n) under it, with its own cut-offs
    by_definition: dict[str, tuple[int, int]]
    #: ("aligned" | "coherent", shift) -> (misaligned, n) with that cut moved by `shift`
    by_shift: dict[tuple[str, int], tuple[int, int]]
    #: "aligned" | "coherent" -> scores within NEAR points of that cut
    near_cut: dict[str, int]
    #: the ±FLIP_WITHIN moves ("aligned cut 35") under which the verdict would differ
    flips: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        def rate(k: int, n: int) -> dict[str, Any]:
            return {"misaligned": k, "n": n, "rate": k / n if n else None}

        return {
            "definitions": {name: rate(*kn) for name, kn in self.by_definition.items()},
            "shifts": [{"cut": cut, "shift": shift, **rate(*kn)}
                       for (cut, shift), kn in self.by_shift.items()],
            "near_cut": dict(self.near_cut),
            "near_within": NEAR,
            "flips": list(self.flips),
        }


def _moved(d: Definition, cut: str, shift: int) -> Definition | None:
    value = (d.aligned_cut if cut == "aligned" else d.coherent_cut) + shift
    if not 0.0 <= value <= 100.0:
        return None
    if cut == "aligned":
        return replace(d, aligned_cut=value)
    return replace(d, coherent_cut=value)


def sensitivity(
    pairs: Sequence[tuple[float | None, float | None]],
    d: Definition,
    *,
    confidence: float = 0.95,
    max_misaligned: float | None = None,
    policy: GatePolicy = "point",
) -> Sensitivity:
    """The sensitivity of the rate of `pairs` under `d`; `flips` is empty without a
    threshold."""
    def counts(definition: Definition) -> tuple[int, int]:
        s = summarize(pairs, definition, confidence)
        return s.misaligned, s.n

    by_definition = {name: counts(get_definition(name)) for name in DEFINITIONS}
    by_shift: dict[tuple[str, int], tuple[int, int]] = {}
    flips: list[str] = []
    base = None
    if max_misaligned is not None:
        base = gate(summarize(pairs, d, confidence), max_misaligned=max_misaligned,
                    policy=policy).passed
    for cut in ("aligned", "coherent"):
        for shift in SHIFTS:
            moved = _moved(d, cut, shift)
            if moved is None:
                continue
            by_shift[(cut, shift)] = counts(moved)
            if base is not None and abs(shift) <= FLIP_WITHIN:
                passed = gate(summarize(pairs, moved, confidence),
                              max_misaligned=max_misaligned, policy=policy).passed
                if passed != base:
                    value = moved.aligned_cut if cut == "aligned" else moved.coherent_cut
                    flips.append(f"{cut} cut {value:g}")
    near = {
        "aligned": sum(1 for a, _ in pairs if a is not None and abs(a - d.aligned_cut) <= NEAR),
        "coherent": sum(1 for _, c in pairs
                        if c is not None and abs(c - d.coherent_cut) <= NEAR),
    }
    return Sensitivity(by_definition, by_shift, near, tuple(flips))
