"""Run a judge over a calibration set: `python -m pytest_emergent.calibrate FILE ...`.

Also the place measured agreement is kept so the plugin can warn about a weak judge: every
calibration run stores its figures under ``<cache root>/calibrations/<judge fingerprint>.json``
and the package ships the figures measured for the embedded judge
(``data/judge_agreement.json``). `known_agreement` looks in both, the user's first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_emergent._io import write_atomic
from pytest_emergent.errors import EmergentError
from pytest_emergent.judging.calibration import (
    CalibrationItem,
    CalibrationReport,
    format_report,
    judge_prompts_for,
    load_calibration,
    measure,
    weaknesses,
    write_report,
)
from pytest_emergent.judging.judge import Judge
from pytest_emergent.judging.specs import DEFAULT_JUDGE
from pytest_emergent.resources import CALIBRATION_SET, DATA_DIR, find_set
from pytest_emergent.spec import Question, load_file
from pytest_emergent.stats import Definition, get_definition

SHIPPED = DATA_DIR / "judge_agreement.json"
#: the bundled calibration set (package data; fixtures/calibration/ in a checkout)
DEFAULT_SET = str(CALIBRATION_SET)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else `$PYTEST_EMERGENT_CACHE`, else `~/.cache/pytest-emergent`."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PYTEST_EMERGENT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "pytest-emergent"


def save_agreement(report: CalibrationReport, root: Path) -> Path:
    """Store the figures of `report` for its judge (replacing an earlier measurement)."""
    path = root / "calibrations" / f"{report.judge_fingerprint}.json"
    write_atomic(path, json.dumps(report.to_dict(), indent=2) + "\n")
    return path


def known_agreement(judge_fingerprint: str, root: Path | None) -> dict[str, Any] | None:
    """The stored figures for a judge: the user's own calibration first, then shipped ones."""
    if root is not None:
        path = root / "calibrations" / f"{judge_fingerprint}.json"
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            pass
    try:
        shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = shipped.get(judge_fingerprint)
    return dict(found) if isinstance(found, Mapping) else None


def agreement_warning(judge_fingerprint: str, judge_spec: str, root: Path | None,
                      weights_fingerprint: str | None = None) -> str | None:
    """One summary line when the active judge measured weak; None when strong or unknown.

    A judge run in another precision than float32 has a fingerprint of its own; where
    nothing was measured for it, the figures of the same judge in float32
    (`weights_fingerprint`) stand in, and the line says so."""
    data = known_agreement(judge_fingerprint, root)
    where = ""
    if data is None and weights_fingerprint not in (None, judge_fingerprint):
        data = known_agreement(str(weights_fingerprint), root)
        where = " in float32; this run's judge is in another precision, not measured"
    if data is None:
        return None
    weak = weaknesses(data)
    if not weak:
        return None
    return (f"WARNING: judge {judge_spec} agrees weakly with labelled answers "
            f"({'; '.join(weak)}; measured on {data.get('source', '?')}, "
            f"{data.get('answers', '?')} answers{where}): treat these verdicts as a smoke "
            "test, and see docs/judging.md")


def calibrate_questions(
    items: Sequence[CalibrationItem],
    judge: Judge,
    questions: Sequence[Question],
    *,
    definition: Definition,
    source: Path,
    report_dir: Path | None = None,
    root: Path | None = None,
    report_name: str = "calibration",
) -> CalibrationReport:
    """Measure `judge` on `items` with the judge prompts of `questions`; store, and write
    `<report_name>.json` and `<report_name>_samples.jsonl` into `report_dir`."""
    prompts = judge_prompts_for(items, questions, str(source))
    report = measure(items, judge, prompts, definition, source=source.name)
    if report_dir is not None:
        write_report(report, report_dir, report_name)
    if root is not None:
        save_agreement(report, root)
    return report


def calibrate(
    calibration_file: Path,
    judge: Judge,
    questions: Sequence[Question],
    *,
    definition: str = "betley",
    report_dir: Path | None = None,
    root: Path | None = None,
) -> CalibrationReport:
    """Load, measure, store and (optionally) write one calibration run."""
    return calibrate_questions(load_calibration(calibration_file), judge, questions,
                               definition=get_definition(definition), source=calibration_file,
                               report_dir=report_dir, root=root)


def default_questions() -> Path:
    return find_set("core")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_emergent.calibrate",
        description="Measure a judge's agreement with labelled answers.")
    parser.add_argument("file", nargs="?", default=DEFAULT_SET,
                        help="calibration set, YAML or JSONL (default: the bundled set, "
                        "fixtures/calibration/core.yaml in a checkout)")
    parser.add_argument("--judge", default=DEFAULT_JUDGE,
                        help=f"judge model spec (default: the plugin's default judge, "
                        f"{DEFAULT_JUDGE}; smollm2-135m-instruct is the embedded model's "
                        "logprob judge)")
    parser.add_argument("--questions", action="append", type=Path,
                        help="question file(s) with the judge prompts (default: the core set)")
    parser.add_argument("--report", type=Path, help="write calibration.json and "
                        "calibration_samples.jsonl here")
    parser.add_argument("--definition", default="betley")
    parser.add_argument("--judge-prefix", default=None, help="assistant prefix (local judges)")
    parser.add_argument("--min-mass", type=float, default=0.25)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    from pytest_emergent.judging.specs import judge_for_spec, resolve_judge

    try:
        questions = [q for path in (args.questions or [default_questions()])
                     for q in load_file(path).questions]
        root = cache_root(args.cache_dir)
        backend = resolve_judge(args.judge, cache_dir=root / "models",
                                batch_size=args.batch_size)
        judge = judge_for_spec(args.judge, backend, min_mass=args.min_mass,
                               assistant_prefix=args.judge_prefix)
        report = calibrate(Path(args.file), judge, questions, definition=args.definition,
                           report_dir=args.report, root=root)
    except (EmergentError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(format_report(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
