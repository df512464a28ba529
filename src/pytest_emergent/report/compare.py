"""Compare a run with an earlier `--em-report` directory (`--em-compare`, `--em-compare-fail`).

Plain Python over two summary dicts (the `summary.json` form), so the same comparison runs
inside a pytest session, from the command line
(`python -m pytest_emergent.report.compare OLD_DIR NEW_DIR`) or from a notebook.

Questions are matched by file name and item name (`q.yaml::quick_buck[json]`), file
aggregates by file name, so a baseline made on another machine or checkout still matches;
a name present in only one run is listed, never compared. The change of a rate is
`new - old` with Newcombe's hybrid score interval (`stats.newcombe_interval`), treating the
two runs as independent samples.

A limit `METRIC:+Npp` fails when a rate rose by more than N percentage points;
`METRIC:+N%` when it rose by more than N percent of the old rate (any rise from an old rate
of 0 exceeds a relative limit). Limits apply to the point estimates; the interval is shown
so a reader can tell a real regression from sampling noise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_emergent.errors import EmergentError
from pytest_emergent.stats import newcombe_interval

#: metric -> (count key, denominator key) in a summary.json entry
METRICS: dict[str, tuple[str, str]] = {
    "misaligned": ("misaligned", "n"),
    "unscored": ("unscored", "total"),
    "incoherent": ("incoherent", "total"),
}
#: differences this small are rounding, not a rise (0.12 - 0.10 is 0.0199999...)
_EPS = 1e-9
_LIMIT_RE = re.compile(r"^\s*([a-z_]+)\s*:\s*\+?\s*(\d+(?:\.\d*)?|\.\d+)\s*(pp|%)\s*$", re.I)


class CompareError(EmergentError):
    """An `--em-compare` baseline cannot be read, or a limit spec is malformed."""


@dataclass(frozen=True)
class CompareLimit:
    """`misaligned:+2pp` (absolute, in percentage points) or `misaligned:+10%` (relative)."""

    metric: str
    #: a fraction: 0.02 for +2pp, 0.10 for +10%
    amount: float
    relative: bool
    text: str

    def exceeded(self, old: float, new: float) -> bool:
        """Whether a rise from `old` to `new` breaks this limit."""
        if self.relative:
            if old <= 0.0:
                return new > _EPS
            return (new - old) / old > self.amount + _EPS
        return new - old > self.amount + _EPS


def parse_limit(text: str) -> CompareLimit:
    """Parse `METRIC:+Npp` / `METRIC:+N%`; raise `CompareError` saying what is accepted."""
    match = _LIMIT_RE.match(str(text))
    known = ", ".join(METRICS)
    if match is None:
        raise CompareError(
            f"expected METRIC:+Npp (percentage points) or METRIC:+N% (relative to the old rate)"
            f" with METRIC one of {known}, e.g. misaligned:+2pp; got {text!r}"
        )
    metric, number, unit = match.group(1).lower(), float(match.group(2)), match.group(3).lower()
    if metric not in METRICS:
        raise CompareError(f"unknown metric {metric!r} in {text!r}; choose one of {known}")
    if unit == "pp" and number > 100:
        raise CompareError(f"{text!r}: a rise in percentage points must be at most 100pp")
    return CompareLimit(metric, number / 100.0, unit == "%", str(text).strip())


@dataclass(frozen=True)
class RateChange:
    """One rate of one question (or file aggregate) in the old and the new run."""

    kind: str  # "question" or "file"
    name: str
    metric: str
    old_k: int
    old_n: int
    new_k: int
    new_n: int
    confidence: float
    #: the limit specs this change breaks
    exceeded: tuple[str, ...] = ()

    @property
    def comparable(self) -> bool:
        return self.old_n > 0 and self.new_n > 0

    @property
    def old_rate(self) -> float | None:
        return self.old_k / self.old_n if self.old_n else None

    @property
    def new_rate(self) -> float | None:
        return self.new_k / self.new_n if self.new_n else None

    @property
    def change(self) -> float | None:
        """`new - old` as a fraction (0.2 = +20 percentage points)."""
        if not self.comparable:
            return None
        return self.new_k / self.new_n - self.old_k / self.old_n

    @property
    def interval(self) -> tuple[float, float] | None:
        """Newcombe interval of `new - old` at `confidence`."""
        if not self.comparable:
            return None
        return newcombe_interval(self.new_k, self.new_n, self.old_k, self.old_n, self.confidence)

    def to_dict(self) -> dict[str, Any]:
        ci = self.interval
        return {
            "kind": self.kind,
            "name": self.name,
            "metric": self.metric,
            "old": {"k": self.old_k, "n": self.old_n, "rate": self.old_rate},
            "new": {"k": self.new_k, "n": self.new_n, "rate": self.new_rate},
            "change": self.change,
            "ci_low": None if ci is None else ci[0],
            "ci_high": None if ci is None else ci[1],
            "confidence": self.confidence,
            "exceeded": list(self.exceeded),
        }

    def message(self) -> str:
        """`q.yaml::quick_buck: misaligned rose from 10.0% (1/10) to 30.0% (3/10), ...`"""
        ci = self.interval
        ci_text = "" if ci is None else (
            f" [{_conf(self.confidence)} CI {pp(ci[0])} to {pp(ci[1])}]"
        )
        return (
            f"{self.name}: {self.metric} rose from {_rate(self.old_k, self.old_n)} to "
            f"{_rate(self.new_k, self.new_n)}, {pp(self.change or 0.0)}{ci_text}; "
            f"limit {', '.join(self.exceeded)}"
        )


@dataclass
class Comparison:
    """Every matched rate of two runs, the limits and what broke them."""

    baseline: str
    old_model: str | None
    new_model: str | None
    limits: tuple[CompareLimit, ...]
    changes: list[RateChange] = field(default_factory=list)
    only_old: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[RateChange]:
        return [c for c in self.changes if c.exceeded]

    def to_dict(self) -> dict[str, Any]:
        """The `compare` section of summary.json (and the report page)."""
        return {
            "baseline": self.baseline,
            "old_model": self.old_model,
            "new_model": self.new_model,
            "limits": [lim.text for lim in self.limits],
            "changes": [c.to_dict() for c in self.changes],
            "only_old": list(self.only_old),
            "only_new": list(self.only_new),
            "regressions": [c.message() for c in self.regressions],
        }

    def lines(self) -> list[str]:
        """The terminal table of the comparison, then one line per regression."""
        header = ["question", "metric", "old", "new", "change", "CI of change", ""]
        rows = []
        for c in self.changes:
            ci = c.interval
            rows.append([
                c.name, c.metric, _rate(c.old_k, c.old_n), _rate(c.new_k, c.new_n),
                "-" if c.change is None else pp(c.change),
                "-" if ci is None else f"{pp(ci[0])} to {pp(ci[1])}",
                "REGRESSION" if c.exceeded else "",
            ])
        out = [f"baseline {self.baseline} (model {self.old_model}) -> model {self.new_model}"]
        if rows:
            widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
            fmt = "  ".join(f"{{:<{w}}}" for w in widths)
            out.append(fmt.format(*header).rstrip())
            out.extend(fmt.format(*r).rstrip() for r in rows)
        else:
            out.append("no question or file of this run is in the baseline")
        if self.only_new:
            out.append("not in the baseline: " + ", ".join(self.only_new))
        if self.only_old:
            out.append("in the baseline only: " + ", ".join(self.only_old))
        limits = ", ".join(lim.text for lim in self.limits)
        if self.regressions:
            out.append(f"FAILED (exit code 1): {len(self.regressions)} rate(s) rose beyond "
                       f"--em-compare-fail {limits}:")
            out.extend("  " + c.message() for c in self.regressions)
        elif self.limits:
            out.append(f"no rate rose beyond --em-compare-fail {limits}")
        return out


def pp(x: float) -> str:
    """A difference of rates in percentage points: 0.253 -> '+25.3pp'."""
    return f"{100 * x:+.1f}pp"


def _rate(k: int, n: int) -> str:
    return f"{100 * k / n:.1f}% ({k}/{n})" if n else f"- (0/{n})"


def _conf(confidence: float) -> str:
    return f"{100 * confidence:g}%"


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read `summary.json` of an earlier `--em-report` directory (or the file itself).

    Raises `CompareError` naming the path when it is missing, not JSON, or not a summary.
    """
    p = Path(path)
    target = p / "summary.json" if p.is_dir() else p
    if not target.is_file():
        where = f"{p} has no summary.json" if p.is_dir() else f"{p} does not exist"
        raise CompareError(f"{where}; expected a directory written by an earlier --em-report run")
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CompareError(f"{target}: cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CompareError(
            f"{target}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise CompareError(f"{target}: not an --em-report summary (no 'questions' list)")
    if not isinstance(data.get("files", []), list):
        raise CompareError(f"{target}: 'files' must be a list (got {data['files']!r:.60})")
    for index, entry in enumerate([*data["questions"], *data.get("files", [])]):
        needed = ("file", "n", "misaligned")
        if not isinstance(entry, dict) or any(k not in entry for k in needed):
            raise CompareError(
                f"{target}: entry {index} lacks one of {', '.join(needed)}: {entry!r:.120}"
            )
        for count_key, total_key in METRICS.values():
            for key in (count_key, total_key):
                value = entry.get(key)
                if key in entry and not (isinstance(value, int) and not isinstance(value, bool)
                                         and value >= 0):
                    raise CompareError(
                        f"{target}: entry {index} ({entry.get('item') or entry.get('file')}): "
                        f"'{key}' must be a count (an integer of at least 0), got {value!r:.40}; "
                        "re-create the baseline with --em-report"
                    )
            if (isinstance(entry.get(count_key), int) and isinstance(entry.get(total_key), int)
                    and entry[count_key] > entry[total_key]):
                raise CompareError(
                    f"{target}: entry {index}: '{count_key}' {entry[count_key]} exceeds "
                    f"'{total_key}' {entry[total_key]}"
                )
        rate = entry.get("rate")
        if rate is not None and not (isinstance(rate, (int, float)) and not isinstance(rate, bool)
                                     and 0.0 <= rate <= 1.0):
            raise CompareError(f"{target}: entry {index}: 'rate' must be a number in 0..1 or "
                               f"null, got {rate!r:.40}")
    return data


def _keyed(entries: Sequence[Mapping[str, Any]], kind: str) -> dict[str, Mapping[str, Any]]:
    """Entries by display name: `file.yaml::item` (questions) or `file.yaml (all)` (files).

    File names, not paths, so runs from different checkouts match; the full path is used
    only when two files of one run share a name.
    """
    def name(entry: Mapping[str, Any], full: bool) -> str:
        f = str(entry["file"]) if full else Path(str(entry["file"])).name
        item = entry.get("item") or entry.get("id")
        return f"{f}::{item}" if kind == "question" else f"{f} (all)"

    short = [name(e, False) for e in entries]
    return {
        name(e, short.count(s) > 1): e for e, s in zip(entries, short, strict=True)
    }


def compare_summaries(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    limits: Sequence[CompareLimit] = (),
    *,
    confidence: float = 0.95,
    baseline: str = "",
) -> Comparison:
    """Match the questions and file aggregates of two summaries and check the limits.

    The misaligned rate is always compared; unscored and incoherent rates only when a
    limit names them.
    """
    metrics = ["misaligned", *dict.fromkeys(
        lim.metric for lim in limits if lim.metric != "misaligned")]
    out = Comparison(baseline, old.get("model"), new.get("model"), tuple(limits))
    for kind, key in (("question", "questions"), ("file", "files")):
        before = _keyed(old.get(key) or [], kind)
        after = _keyed(new.get(key) or [], kind)
        out.only_old += [n for n in before if n not in after]
        out.only_new += [n for n in after if n not in before]
        for name, entry in after.items():
            if name not in before:
                continue
            for metric in metrics:
                k_key, n_key = METRICS[metric]
                prev = before[name]
                if any(k not in d for d in (prev, entry) for k in (k_key, n_key)):
                    continue  # a baseline written before this count was kept
                change = RateChange(
                    kind, name, metric, int(prev[k_key]), int(prev[n_key]),
                    int(entry[k_key]), int(entry[n_key]), confidence,
                )
                broken = tuple(
                    lim.text for lim in limits
                    if lim.metric == metric and change.comparable
                    and lim.exceeded(change.old_rate or 0.0, change.new_rate or 0.0)
                )
                out.changes.append(replace(change, exceeded=broken))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pytest_emergent.report.compare OLD_DIR NEW_DIR [--fail SPEC ...]`."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_emergent.report.compare",
        description="Compare the rates of two --em-report directories.",
    )
    parser.add_argument("old", help="the baseline report directory (or its summary.json)")
    parser.add_argument("new", help="the new report directory (or its summary.json)")
    parser.add_argument("--fail", action="append", default=[], metavar="SPEC",
                        help="e.g. misaligned:+2pp or unscored:+10%%; exit 1 when exceeded")
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args(argv)
    try:
        limits = [parse_limit(s) for s in args.fail]
        old, new = load_baseline(args.old), load_baseline(args.new)
    except CompareError as exc:
        parser.error(str(exc))
    result = compare_summaries(old, new, limits, confidence=args.confidence, baseline=args.old)
    print("\n".join(result.lines()))
    return 1 if result.regressions else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
