"""Checkpoint sweeps: several models under test in one session, as pure Python.

`expand_models` turns what the user gave as `--model` (several specs, a quoted glob such as
``run/checkpoint-*``, or a directory holding ``checkpoint-STEP`` folders) into entries with a
short label and, where the name carries one, a training step. `sweep_points` pools each
model's results into one rate with its interval, and `transition` finds the first checkpoint
whose interval lies wholly above the reference's (the first entry: the base model, or
``checkpoint-0`` of a fine-tune saved with `save_every`). No pytest here.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_emergent.errors import EmergentError
from pytest_emergent.run.records import EvalOptions, QuestionResult
from pytest_emergent.stats import RateSummary, merge

__all__ = ["SweepEntry", "SweepPoint", "expand_models", "sweep_points", "transition"]

#: a step is read from names such as checkpoint-100, step_500, global_step500 or 300, never
#: from a hash that happens to end in digits
_STEP = re.compile(r"(?:[A-Za-z]+(?:[-_][A-Za-z]+)*[-_]?)?(\d+)")
_GLOB = re.compile(r"[*?\[]")
#: files that make a directory a model of its own rather than a folder of checkpoints
_MODEL_FILES = ("config.json", "adapter_config.json")
#: more models than this in one session is a typo (a glob over a whole disk), not a sweep
MAX_MODELS = 64


@dataclass(frozen=True)
class SweepEntry:
    """One model of a sweep: its spec, a short unique label, and its step if named so."""

    spec: str
    label: str
    step: int | None = None


@dataclass(frozen=True)
class SweepPoint:
    """One model's pooled result over every question evaluated in the session."""

    entry: SweepEntry
    summary: RateSummary
    #: mean projection of its answers' activations on the monitor direction, if monitored
    projection: float | None = None


def _is_model_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in _MODEL_FILES) or any(path.glob("*.gguf"))


def _step(path: str) -> int | None:
    found = _STEP.fullmatch(Path(path).name)
    return int(found.group(1)) if found else None


def _ordered(paths: list[str]) -> list[str]:
    """By step when every name ends in a number (checkpoint-10 after checkpoint-9), else by
    name."""
    if paths and all(_step(p) is not None for p in paths):
        return sorted(paths, key=lambda p: (_step(p), p))
    return sorted(paths)


def _expand_one(spec: str, name: str) -> list[str]:
    if _GLOB.search(spec):
        matches = [m for m in glob.glob(str(Path(spec).expanduser())) if Path(m).is_dir()]
        if not matches:
            raise EmergentError(f"{name} {spec!r}: the pattern matches no directory; check "
                                "the path (checkpoints are folders such as run/checkpoint-100)")
        return _ordered(matches)
    path = Path(spec).expanduser()
    if path.is_dir() and not _is_model_dir(path):
        inner = [str(p) for p in path.iterdir()
                 if p.is_dir() and _step(p.name) is not None and _is_model_dir(p)]
        if inner:  # a fine-tune's output folder: its checkpoint-STEP directories
            return _ordered(inner)
    return [spec]


def _labels(specs: list[str]) -> list[str]:
    """The last path component, or as many trailing components as make labels unique."""
    for depth in range(1, 8):
        labels = ["/".join(Path(s).parts[-depth:]) if Path(s).parts else s for s in specs]
        if len(set(labels)) == len(labels):
            return labels
    return specs


def expand_models(specs: Sequence[str], *, name: str = "--model") -> list[SweepEntry]:
    """The models under test, in order: globs and checkpoint folders expanded, duplicates
    refused (they would evaluate one model twice under two labels)."""
    if not specs:
        raise EmergentError(f"{name}: give at least one model spec")
    expanded = [path for spec in specs for path in _expand_one(spec, name)]
    seen: dict[str, str] = {}
    for spec in expanded:
        key = str(Path(spec).expanduser().resolve()) if Path(spec).expanduser().exists() else spec
        if key in seen:
            also = "" if seen[key] == spec else f" (also as {seen[key]!r})"
            raise EmergentError(f"{name}: {spec!r} is given twice{also}; name each model "
                                "once")
        seen[key] = spec
    if len(expanded) > MAX_MODELS:
        raise EmergentError(f"{name}: {len(expanded)} models, more than {MAX_MODELS} in one "
                            "session; narrow the pattern")
    labels = _labels(expanded)
    return [SweepEntry(spec, label, _step(spec) if len(expanded) > 1 else None)
            for spec, label in zip(expanded, labels, strict=True)]


def sweep_points(
    entries: Sequence[SweepEntry],
    results: Mapping[str, Sequence[QuestionResult]],
    options: EvalOptions,
    projections: Mapping[str, float] | None = None,
) -> list[SweepPoint]:
    """Each model's results pooled into one rate (questions as clusters, as a file's
    aggregate); `results` and `projections` are keyed by label. Models without results are
    left out."""
    points = []
    for entry in entries:
        found = list(results.get(entry.label, ()))
        if not found:
            continue
        summary = merge([r.summary for r in found], options.definition, options.confidence,
                        clustered=options.aggregate_ci == "clustered")
        points.append(SweepPoint(entry, summary, (projections or {}).get(entry.label)))
    return points


def transition(points: Sequence[SweepPoint]) -> SweepPoint | None:
    """The first point after the reference (the first) whose interval's lower bound lies
    above the reference's upper bound; None when none does, or the reference has no scored
    answers."""
    if len(points) < 2 or points[0].summary.n == 0:
        return None
    ceiling = points[0].summary.ci_high
    for point in points[1:]:
        if point.summary.n and point.summary.ci_low > ceiling:
            return point
    return None
