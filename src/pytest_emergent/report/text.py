"""Outputs: the terminal summary table, `samples.jsonl`, `summary.json` and `report.html`
(rendered by `report.html`)."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_emergent._io import write_atomic
from pytest_emergent.stats import BaselineComparison, RateSummary, pct_or_dash

if TYPE_CHECKING:
    from pytest_emergent.run.records import QuestionResult
    from pytest_emergent.run.session import EvalRun


def _increase(cmp: BaselineComparison | None) -> list[str]:
    if cmp is None:
        return []
    return [pct_or_dash(cmp.baseline_rate) if cmp.baseline_n else "-",
            f"{100 * cmp.difference:+.1f}pp [{100 * cmp.low:+.1f}, {100 * cmp.high:+.1f}]",
            f"+{100 * cmp.max_increase:g}pp"]


def _row(name: str, s: RateSummary, threshold: float | None, passed: bool,
         cmp: BaselineComparison | None = None, with_baseline: bool = False) -> list[str]:
    return [
        name,
        str(s.total),
        f"{s.misaligned}/{s.n}",
        pct_or_dash(s.rate) if s.n else "-",
        f"{pct_or_dash(s.ci_low)}–{pct_or_dash(s.ci_high)}" if s.n else "-",
        str(s.unscored),
        str(s.incoherent),
        *(_increase(cmp) if cmp is not None
          else ["-", "-", pct_or_dash(threshold)] if with_baseline
          else [pct_or_dash(threshold)]),
        "PASS" if passed else "FAIL",
    ]


def file_labels(paths: Sequence[str | Path]) -> dict[str | Path, str]:
    """How the terminal table names each question file: its file name, or, where two files
    of the run share one (a/q.yaml, b/q.yaml), their paths below their common folder."""
    names = Counter(Path(p).name for p in set(paths))
    clashing = sorted({str(p) for p in paths if names[Path(p).name] > 1})
    base = os.path.commonpath([os.path.abspath(p) for p in clashing]) if clashing else ""
    return {p: (os.path.relpath(os.path.abspath(p), base) if str(p) in clashing
                else Path(p).name) for p in paths}


def summary_lines(run: EvalRun) -> list[str]:
    """The terminal table: one row per evaluated question, then one per file aggregate."""
    if run.calibrations:
        from pytest_emergent.judging.calibration import format_report

        return [line for _path, report in run.calibrations for line in format_report(report)]
    if not run.results and run.error is None:
        return []
    lines: list[str] = []
    if run.error is not None:
        lines.append(f"evaluation failed: {type(run.error).__name__}: {run.error}")
    with_baseline = any(r.baseline for r in run.results.values())
    header = ["question", "answers", "misaligned", "rate", "CI", "unscored", "incoherent",
              *(["baseline", "increase [CI]", "max"] if with_baseline else ["max"]),
              "result"]
    shown = file_labels([src for src, _qid in run.results] + list(run.file_results))
    rows = [
        _row(f"{shown[src]}::{res.question.item_name}", res.summary,
             res.thresholds.max_misaligned, res.decision.passed, res.baseline, with_baseline)
        for (src, _qid), res in run.results.items()
    ]
    rows += [
        _row(f"{shown[path]} (all)", f.summary, f.thresholds.max_misaligned,
             f.decision.passed, f.baseline, with_baseline)
        for path, f in run.file_results.items()
    ]
    if rows:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines.append(fmt.format(*header))
        lines.extend(fmt.format(*r) for r in rows)
        s = run.settings
        conf = int(round(100 * s.confidence))
        lines.append(
            f"model {s.model} | judge {s.judge} | definition {s.definition} | gate {s.gate} "
            f"(aggregate {s.aggregate_gate}) | {conf}% Wilson CI"
            f"{', questions as clusters for files' if s.aggregate_ci == 'clustered' else ''}"
            f" | {run.seconds:.1f}s evaluating"
        )
        warning = run.judge_warning()
        if warning:
            lines.append(warning)
        skipped = sorted({m for res in run.results.values() for m in res.question.skipped_metrics})
        if skipped:
            lines.append(f"skipped judge metrics (not judged, not unscored): {', '.join(skipped)}")
        fragile = [f"{res.question.item_name} ({', '.join(res.sensitivity.flips)})"
                   for res in run.results.values()
                   if res.sensitivity is not None and res.sensitivity.flips]
        if fragile:
            lines.append("warning: verdicts that a cut-off moved by 5 points would flip: "
                         + "; ".join(fragile) + " (summary.json has every rate under each "
                         "definition and moved cut-offs)")
        if s.early_stop:
            saved = sum(res.samples_saved for res in run.results.values())
            decided = sum(res.early_stop is not None for res in run.results.values())
            lines.append(
                f"early stopping: {decided} questions decided early, {saved} samples saved"
            )
        cache_line = run.cache_line()
        if cache_line:
            lines.append(cache_line)
    return lines


def question_summary(res: QuestionResult) -> dict[str, Any]:
    """The summary.json entry of one question."""
    s = res.summary
    return {
        "id": res.question.id,
        "item": res.question.item_name,
        "file": str(res.question.source),
        "variant": res.question.variant,
        "n": s.n,
        "total": s.total,
        "misaligned": s.misaligned,
        "coherent": s.coherent_ok,
        "incoherent": s.incoherent,
        "unscored": s.unscored,
        "rate": s.rate,
        "ci_low": s.ci_low,
        "ci_high": s.ci_high,
        "confidence": s.confidence,
        "threshold": res.thresholds.max_misaligned,
        "min_coherent": res.thresholds.min_coherent,
        "max_unscored": res.thresholds.max_unscored,
        "passed": res.decision.passed,
        "reasons": list(res.decision.reasons),
        "labels": res.labels,
        "samples_saved": res.samples_saved,
        "early_stop": res.early_stop,
        "sensitivity": None if res.sensitivity is None else res.sensitivity.to_dict(),
        "baseline": None if res.baseline is None else res.baseline.to_dict(),
        "metrics": list(res.question.judge_prompts),
        "skipped_metrics": list(res.question.skipped_metrics),
    }


def write_report(
    run: EvalRun, directory: Path, *, compare: dict[str, Any] | None = None
) -> None:
    """Write `samples.jsonl` (one record per answer), `summary.json` (with a `compare`
    section from `--em-compare` when given) and `report.html` rendered from both."""
    from pytest_emergent.report.html import write_html

    directory = Path(directory)
    records = [
        {**record.to_dict(), "file": str(res.question.source)}
        for res in run.results.values()
        for record in res.records
    ]
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    write_atomic(directory / "samples.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    summary = summary_dict(run)
    if compare is not None:
        summary["compare"] = compare
    write_atomic(directory / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_html(directory, summary, records)


def summary_dict(run: EvalRun) -> dict[str, Any]:
    """The content of `summary.json` (also what `--em-compare` compares)."""
    ordered = list(run.results.values())
    s = run.settings
    definition = run.options.definition
    summary: dict[str, Any] = {
        "model": s.model,
        "judge": s.judge,
        "model_fingerprint": getattr(run.model_backend, "fingerprint", None),
        "judge_fingerprint": getattr(run.judge_backend, "fingerprint", None),
        "settings": {
            "definition": s.definition,
            "aligned_cut": definition.aligned_cut,
            "coherent_cut": definition.coherent_cut,
            "definition_rule": definition.rule,
            "gate": s.gate,
            "aggregate_gate": s.aggregate_gate,
            "aggregate_ci": s.aggregate_ci,
            "metrics": None if s.metrics is None else list(s.metrics),
            "baseline": s.baseline,
            "max_increase": (s.max_increase if any(r.baseline for r in run.results.values())
                             else None),
            "confidence": s.confidence,
            "seed": s.seed,
            "samples": s.samples,
            "judge_min_mass": s.judge_min_mass,
            "early_stop": s.early_stop,
        },
        "environment": {"python": sys.version.split()[0], "platform": platform.platform()},
        "seconds": round(run.seconds, 3),
        "samples_saved": sum(res.samples_saved for res in ordered),
        "questions": [question_summary(res) for res in ordered],
        "files": [
            {
                "file": path,
                "questions": list(f.question_ids),
                "n": f.summary.n,
                "total": f.summary.total,
                "misaligned": f.summary.misaligned,
                "unscored": f.summary.unscored,
                "incoherent": f.summary.incoherent,
                "rate": f.summary.rate,
                "ci_low": f.summary.ci_low,
                "ci_high": f.summary.ci_high,
                "ci_method": f.summary.ci_method,
                "design_effect": f.summary.design_effect,
                "baseline": None if f.baseline is None else f.baseline.to_dict(),
                "threshold": f.thresholds.max_misaligned,
                "passed": f.decision.passed,
            }
            for path, f in run.file_results.items()
        ],
    }
    return summary
