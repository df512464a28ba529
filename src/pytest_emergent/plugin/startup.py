"""Option values checked when the session starts, against the library: a model placement
the hardware cannot run, a judge-prompt file that does not load, an unknown bundled suite.
Each failure is a `pytest.UsageError` naming the option (or ini key)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_emergent.report.compare import CompareLimit


def model_spec(spec: str | None, name: str) -> None:
    """A judge or baseline spec that names no model (`nonsense:`, a missing path) is a usage
    error naming the option now, not a setup error on every item later."""
    if spec is None or not spec.strip():  # an empty baseline is no baseline
        return
    from pytest_emergent.errors import ModelSpecError
    from pytest_emergent.models.registry import check_spec

    try:
        check_spec(spec)
    except ModelSpecError as exc:
        raise pytest.UsageError(f"{name}: {exc}") from None


def placement(dtype: str, dtype_name: str, judge_dtype: str, judge_dtype_name: str,
              device: str, device_name: str, tested: Sequence[str], judge: str
              ) -> dict[str, str]:
    """--em-dtype / --em-judge-dtype / --em-device, checked now: a GPU torch cannot see,
    where any model of the run (under test, baseline, or the local model of a judge) runs
    locally, and an explicit bfloat16 on hardware without native bf16, where the models it
    applies to run locally (the ones under test for --em-dtype, the judge for
    --em-judge-dtype), stop the run before anything loads."""
    from pytest_emergent.models.hf.placement import DTYPES

    dtype, judge_dtype, device = dtype.lower(), judge_dtype.lower(), device.lower()
    for value, name in ((dtype, dtype_name), (judge_dtype, judge_dtype_name)):
        if value not in DTYPES:
            raise pytest.UsageError(f"{name}: expected one of {', '.join(DTYPES)}, got "
                                    f"{value!r}")
    if device not in ("auto", "cpu", "cuda") and not (
            device.startswith("cuda:") and device[5:].isdigit()):
        raise pytest.UsageError(f"{device_name}: expected auto, cpu, cuda or cuda:N, got "
                                f"{device!r}")
    chosen = {"dtype": dtype, "judge_dtype": judge_dtype, "device": device}
    if "bfloat16" not in (dtype, judge_dtype) and not device.startswith("cuda"):
        return chosen
    from pytest_emergent.errors import EmergentError
    from pytest_emergent.models.hf.placement import pick_device, pick_dtype
    from pytest_emergent.models.registry import runs_locally

    tested_local = any(runs_locally(spec) for spec in tested)
    judge_local = runs_locally(judge)
    try:
        if device.startswith("cuda") and (tested_local or judge_local):
            pick_device(device, device_name)
        if dtype == "bfloat16" and tested_local:
            pick_dtype(dtype, pick_device(device, device_name), dtype_name)
        if judge_dtype == "bfloat16" and judge_local:
            pick_dtype(judge_dtype, pick_device(device, device_name), judge_dtype_name)
    except EmergentError as exc:
        raise pytest.UsageError(str(exc)) from None
    return chosen


def judge_prompts_file(path: Path | None, name: str) -> Path | None:
    """--em-judge-prompts: read and checked now, so a bad file stops the run at once."""
    if path is None:
        return None
    from pytest_emergent.errors import QuestionError
    from pytest_emergent.spec.judge_files import read_judge_file

    try:
        read_judge_file(path)
    except QuestionError as exc:
        raise pytest.UsageError(f"{name}: {exc}") from None
    return Path(path)


def suites(text: str | None, name: str) -> tuple[Path, ...]:
    from pytest_emergent.plugin.suites import suite_paths

    return () if text is None else suite_paths(text, name)


def limit(text: str, name: str) -> CompareLimit:
    from pytest_emergent.report.compare import CompareError, parse_limit

    try:
        return parse_limit(text)
    except CompareError as exc:
        raise pytest.UsageError(f"{name}: {exc}") from None


def check_report_dir(directory: Path | None, name: str) -> None:
    """--em-report must be a directory this process can create and write, checked before
    anything is evaluated."""
    if directory is None:
        return
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise pytest.UsageError(f"{name}: {path} is a file; give a directory for the report")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"{name}: cannot create or write {path} ({existing} is not a "
                                "writable directory)")


def compare_settings(directory: Path | None, limits: tuple[CompareLimit, ...]) -> dict[str, Any]:
    """--em-compare: read the baseline now, so a bad path stops the run before evaluating."""
    if directory is None:
        if limits:
            raise pytest.UsageError(
                "--em-compare-fail: needs --em-compare OLD_DIR, the report to compare with"
            )
        return {}
    from pytest_emergent.report.compare import CompareError, load_baseline

    try:
        baseline = load_baseline(directory)
    except CompareError as exc:
        raise pytest.UsageError(f"--em-compare: {exc}") from None
    return {"compare_dir": directory, "compare_baseline": baseline, "compare_fail": limits}
