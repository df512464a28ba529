"""A checkpoint sweep's report: the terminal table, `sweep.json`, and `sweep.svg` /
`sweep.html` (the pooled misaligned rate per checkpoint against its step, intervals as
whiskers, the reference's upper bound as a dashed line, the transition ringed, and the
monitor's projection as a second line on its own axis). Each model's own report is written
beside them, in a folder named after its label.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_emergent._io import write_atomic
from pytest_emergent.stats import pct_or_dash

if TYPE_CHECKING:
    from pytest_emergent.run.sweep import SweepPoint
    from pytest_emergent.run.sweep_run import SweepRun

__all__ = ["slug", "sweep_dict", "sweep_lines", "sweep_svg", "write_sweep"]


def slug(label: str) -> str:
    """A folder name for a model's label (checkpoint-100, run-a_checkpoint-100)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._") or "model"


def sweep_dict(sweep: SweepRun) -> dict[str, Any]:
    """The content of `sweep.json`."""
    points = sweep.points()
    found = sweep.transition()
    return {
        "reference": points[0].entry.label if points else None,
        "transition": None if found is None else {"label": found.entry.label,
                                                  "step": found.entry.step},
        "monitor": sweep.monitor.to_dict() if sweep.monitor is not None else None,
        "monitor_error": sweep.monitor_error,
        "models": [
            {"label": p.entry.label, "spec": p.entry.spec, "step": p.entry.step,
             "rate": p.summary.rate, "ci_low": p.summary.ci_low, "ci_high": p.summary.ci_high,
             "misaligned": p.summary.misaligned, "n": p.summary.n, "total": p.summary.total,
             "unscored": p.summary.unscored, "incoherent": p.summary.incoherent,
             "ci_method": p.summary.ci_method, "projection": p.projection,
             "report": f"{slug(p.entry.label)}/summary.json"}
            for p in points
        ],
    }


def sweep_lines(sweep: SweepRun) -> list[str]:
    """The terminal table: one row per model, then the transition line."""
    points = sweep.points()
    if not points:
        return []
    monitored = sweep.monitor_source is not None
    header = ["model", "step", "answers", "misaligned", "rate", "CI",
              *(["projection"] if monitored else [])]
    rows = [[p.entry.label, "-" if p.entry.step is None else str(p.entry.step),
             str(p.summary.total), f"{p.summary.misaligned}/{p.summary.n}",
             pct_or_dash(p.summary.rate) if p.summary.n else "-",
             f"{pct_or_dash(p.summary.ci_low)}–{pct_or_dash(p.summary.ci_high)}"
             if p.summary.n else "-",
             *([f"{p.projection:+.3f}" if p.projection is not None else "-"]
               if monitored else [])]
            for p in points]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [f"checkpoint sweep: {len(points)} models, pooled over every question "
             f"(reference {points[0].entry.label})", fmt.format(*header),
             *(fmt.format(*r) for r in rows)]
    return [*lines, *_notes(sweep, points)]


def _notes(sweep: SweepRun, points: Sequence[SweepPoint]) -> list[str]:
    """The transition and monitor lines under the table (and on the HTML page)."""
    found = sweep.transition()
    ref = points[0].summary
    if found is not None:
        lines = [f"transition: {found.entry.label}, the first whose interval "
                 f"({pct_or_dash(found.summary.ci_low)}–{pct_or_dash(found.summary.ci_high)})"
                 f" lies above the reference's ({pct_or_dash(ref.ci_low)}–"
                 f"{pct_or_dash(ref.ci_high)})"]
    else:
        lines = ["transition: none (no model's interval lies wholly above the "
                 f"reference's, {pct_or_dash(ref.ci_low)}–{pct_or_dash(ref.ci_high)})"]
    if sweep.monitor is not None:
        m = sweep.monitor
        lines.append(f"monitor: layer {m.layer}, direction from {m.source} "
                     f"({m.n_misaligned} misaligned vs {m.n_aligned} aligned answers, "
                     f"separation {m.separation:.3f}); projection 0 = halfway between them")
    if sweep.monitor_error:
        lines.append(f"monitor failed: {sweep.monitor_error}")
    return lines


def _x_positions(points: Sequence[SweepPoint]) -> tuple[list[float], str]:
    steps = [p.entry.step for p in points]
    if all(s is not None for s in steps) and len(set(steps)) == len(steps):
        return [float(s or 0) for s in steps], "step"
    return [float(i) for i in range(len(points))], "model"


def sweep_svg(points: Sequence[SweepPoint], transition_label: str | None = None) -> str:
    """The rate-vs-step plot (pure string building)."""
    width, height = 760, 360
    left, right, top, bottom = 64, 72, 24, 64
    xs, x_name = _x_positions(points)
    lo_x, hi_x = (min(xs), max(xs)) if xs else (0.0, 1.0)
    span = (hi_x - lo_x) or 1.0
    ceiling = max([0.05] + [p.summary.ci_high for p in points if p.summary.n])
    y_max = min(1.0, ceiling * 1.1)

    def px(x: float) -> float:
        return left + (width - left - right) * (x - lo_x) / span

    def py(rate: float) -> float:
        return top + (height - top - bottom) * (1 - rate / y_max)

    parts = [f'<line class="axis" x1="{left}" x2="{width - right}" y1="{py(0):.1f}" '
             f'y2="{py(0):.1f}" stroke="#555"/>']
    for i in range(6):
        rate = y_max * i / 5
        parts.append(f'<text x="{left - 6}" y="{py(rate) + 4:.1f}" text-anchor="end" '
                     f'font-size="11">{100 * rate:.0f}%</text>')
    if points and points[0].summary.n:
        ref = py(points[0].summary.ci_high)
        parts.append(f'<line class="reference" x1="{left}" x2="{width - right}" y1="{ref:.1f}" '
                     f'y2="{ref:.1f}" stroke="#999" stroke-dasharray="4 3"/>')
    path = []
    for x, p in zip(xs, points, strict=True):
        cx = px(x)
        label = escape(p.entry.label, quote=True)
        parts.append(f'<text x="{cx:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                     f'font-size="10">{escape(str(p.entry.step) if x_name == "step" else label)}'
                     "</text>")
        if not p.summary.n:
            continue
        path.append(f"{cx:.1f},{py(p.summary.rate):.1f}")
        parts.append(f'<line class="ci-whisker" data-model="{label}" x1="{cx:.1f}" '
                     f'x2="{cx:.1f}" y1="{py(p.summary.ci_low):.1f}" '
                     f'y2="{py(p.summary.ci_high):.1f}" stroke="#c0392b"/>')
        ring = ' stroke="#000" stroke-width="2"' if p.entry.label == transition_label else ""
        parts.append(f'<circle class="rate-point" data-model="{label}" cx="{cx:.1f}" '
                     f'cy="{py(p.summary.rate):.1f}" r="4" fill="#c0392b"{ring}>'
                     f"<title>{label}: {pct_or_dash(p.summary.rate)} "
                     f"[{pct_or_dash(p.summary.ci_low)}, {pct_or_dash(p.summary.ci_high)}] "
                     f"n={p.summary.n}</title></circle>")
    if path:
        parts.append(f'<polyline class="rate-line" points="{" ".join(path)}" fill="none" '
                     'stroke="#c0392b"/>')
    parts.extend(_projection_parts(xs, points, px, top, height - bottom, width - right))
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 16}" '
                 f'text-anchor="middle" font-size="12">{x_name}</text>')
    return (f'<svg id="sweep-plot" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            'aria-label="misaligned rate per checkpoint with intervals">'
            + "".join(parts) + "</svg>")


def _projection_parts(xs: Sequence[float], points: Sequence[SweepPoint], px: Any,
                      y_top: float, y_bottom: float, x_right: float) -> list[str]:
    values = [(x, p.projection) for x, p in zip(xs, points, strict=True)
              if p.projection is not None]
    if not values:
        return []
    lo = min(v for _x, v in values)
    hi = max(v for _x, v in values)
    span = (hi - lo) or 1.0

    def py(v: float) -> float:
        return y_bottom - (y_bottom - y_top) * (v - lo) / span

    line = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in values)
    return [f'<polyline class="projection-line" points="{line}" fill="none" stroke="#2c7fb8" '
            'stroke-dasharray="6 3"/>',
            *(f'<circle class="projection-point" cx="{px(x):.1f}" cy="{py(v):.1f}" r="3" '
              f'fill="#2c7fb8"><title>projection {v:+.3f}</title></circle>' for x, v in values),
            f'<text x="{x_right + 6}" y="{py(hi) + 4:.1f}" font-size="11" fill="#2c7fb8">'
            f"{hi:+.2f}</text>",
            f'<text x="{x_right + 6}" y="{py(lo) + 4:.1f}" font-size="11" fill="#2c7fb8">'
            f"{lo:+.2f}</text>"]


def write_sweep(sweep: SweepRun, directory: Path) -> None:
    """Each model's report in `directory/LABEL/`, then sweep.json, sweep.svg, sweep.html."""
    from pytest_emergent.report.text import write_report

    directory = Path(directory)
    for entry in sweep.entries:
        run = sweep.runs[entry.label]
        if run.results:
            write_report(run, directory / slug(entry.label))
    data = sweep_dict(sweep)
    write_atomic(directory / "sweep.json", json.dumps(data, indent=2) + "\n")
    svg = sweep_svg(sweep.points(), (data["transition"] or {}).get("label"))
    write_atomic(directory / "sweep.svg", svg + "\n")
    rows = "".join(
        f'<tr><td><a href="{escape(slug(m["label"]))}/report.html">{escape(m["label"])}</a>'
        f'</td><td>{"-" if m["step"] is None else m["step"]}</td>'
        f'<td>{m["misaligned"]}/{m["n"]}</td><td>{pct_or_dash(m["rate"])}</td>'
        f'<td>{pct_or_dash(m["ci_low"])}–{pct_or_dash(m["ci_high"])}</td>'
        f'<td>{"-" if m["projection"] is None else format(m["projection"], "+.3f")}</td></tr>'
        for m in data["models"])
    points = sweep.points()
    lines = "".join(f"<p>{escape(line)}</p>" for line in (_notes(sweep, points) if points
                                                           else []))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>checkpoint sweep</title>"
            "</head><body><h1>Checkpoint sweep</h1>" + svg + lines +
            "<table><tr><th>model</th><th>step</th><th>misaligned</th><th>rate</th>"
            "<th>CI</th><th>projection</th></tr>" + rows + "</table></body></html>\n")
    write_atomic(directory / "sweep.html", page)
