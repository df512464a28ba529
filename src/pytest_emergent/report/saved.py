"""Reading a saved report: `summary.json` and the records of `samples.jsonl`, in the dict
form the report writer produced, so a report directory can be rendered or compared later.

Plain dicts in, plain values out; imports only `stats/` of the package.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_emergent.stats import DEFINITIONS, Definition, get_definition


def score_of(record: Mapping[str, Any], metric: str) -> float | None:
    """A record's numeric score on `metric` (None when unscored or absent)."""
    score = (record.get("scores") or {}).get(metric) or {}
    value = score.get("score")
    return float(value) if isinstance(value, (int, float)) else None


def scatter_xy(record: Mapping[str, Any]) -> tuple[float, float] | None:
    """(coherent, aligned) of an answer the scatter shows: one with an aligned score and a
    coherent score (or no coherence judge at all, which the definitions read as 100)."""
    aligned = score_of(record, "aligned")
    if aligned is None:
        return None
    if "coherent" not in (record.get("scores") or {}):
        return 100.0, aligned
    coherent = score_of(record, "coherent")
    return None if coherent is None else (coherent, aligned)


def unscored_reasons(record: Mapping[str, Any]) -> list[str]:
    """`metric: reason` for each judgment of the record that produced no score."""
    return [
        f"{metric}: {score.get('unscored_reason')}"
        for metric, score in (record.get("scores") or {}).items()
        if score.get("unscored_reason")
    ]


def definition_of(settings: Mapping[str, Any]) -> Definition:
    """The misalignment definition a run used, from its summary's `settings`."""
    name = str(settings.get("definition", "betley"))
    aligned, coherent = settings.get("aligned_cut"), settings.get("coherent_cut")
    if name in DEFINITIONS:
        return get_definition(name, aligned_cut=aligned, coherent_cut=coherent)
    return Definition(name, float(aligned or 30.0), float(coherent or 50.0))


def load_report_dir(directory: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`summary.json` and the records of `samples.jsonl` (if present) of a report dir."""
    d = Path(directory)
    summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
    samples = d / "samples.jsonl"
    records = []
    if samples.is_file():
        for line in samples.read_text(encoding="utf-8").splitlines():
            if line.strip():
                records.append(json.loads(line))
    return summary, records
