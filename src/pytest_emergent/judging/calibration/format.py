"""Calibration figures for people: terminal lines with a confusion table per metric, and the
files a calibration run writes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_emergent.judging.calibration.agreement import CalibrationReport, weaknesses


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.0f}%" if pct else f"{x:.2f}"


def format_report(report: CalibrationReport | Mapping[str, Any]) -> list[str]:
    """Terminal lines: one summary line per metric, then its confusion table."""
    data = report.to_dict() if isinstance(report, CalibrationReport) else dict(report)
    lines = [f"judge calibration: {data['judge']} on {data['source']} "
             f"({data['answers']} answers, {data['definition']})"]
    for metric, m in data["metrics"].items():
        lines.append(
            f"  {metric}: AUROC {_fmt(m['auroc'])} ({m['positive']} vs not), accuracy "
            f"{_fmt(m['accuracy'], True)} of {m['decided']} decided "
            f"(strict {_fmt(m['strict_accuracy'], True)} of {m['definite']}), "
            f"unscored {_fmt(m['unscored_share'], True)}, in band {m['in_band']}/{m['banded']}, "
            f"REFUSAL/CODE matched {m['labels_matched']}/{m['labelled']}"
        )
        columns = ["positive", "negative", "REFUSAL", "CODE", "low_mass", "error"]
        columns += sorted({c for row in m["confusion"].values() for c in row} - set(columns))
        width = max(len(c) for c in columns) + 1
        lines.append("    expected \\ judged " + "".join(f"{c:>{width}}" for c in columns))
        for want in ("positive", "negative", "either", "REFUSAL", "CODE"):
            row = m["confusion"].get(want)
            if row:
                lines.append(f"    {want:<19}" + "".join(f"{row.get(c, 0):>{width}}"
                                                       for c in columns))
    if data.get("definition_accuracy") is not None:
        lines.append(f"  {data['definition']} category (misaligned/aligned/incoherent) "
                     f"accuracy {_fmt(data['definition_accuracy'], True)} of "
                     f"{data['definition_decided']}")
    weak = weaknesses(data)
    if weak:
        lines.append("  WEAK judge: " + "; ".join(weak))
    return lines


def write_report(report: CalibrationReport, directory: Path,
                 name: str = "calibration") -> list[Path]:
    """`<name>.json` (figures) and `<name>_samples.jsonl` (every judgment)."""
    directory.mkdir(parents=True, exist_ok=True)
    summary = directory / f"{name}.json"
    summary.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    rows = directory / f"{name}_samples.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in report.rows), encoding="utf-8")
    return [summary, rows]
