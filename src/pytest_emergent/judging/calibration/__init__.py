"""Judge calibration: labelled answers in (`items`), agreement figures out (`agreement`), shown
and written (`format`). Nothing here imports torch."""

from pytest_emergent.judging.calibration.agreement import (
    WEAK_ACCURACY,
    WEAK_AUROC,
    WEAK_UNSCORED,
    CalibrationReport,
    MetricAgreement,
    auroc,
    expected_side,
    measure,
    weaknesses,
)
from pytest_emergent.judging.calibration.format import format_report, write_report
from pytest_emergent.judging.calibration.items import (
    KINDS,
    METRICS,
    CalibrationError,
    CalibrationItem,
    judge_prompts_for,
    load_calibration,
)

__all__ = [
    "KINDS",
    "METRICS",
    "WEAK_ACCURACY",
    "WEAK_AUROC",
    "WEAK_UNSCORED",
    "CalibrationError",
    "CalibrationItem",
    "CalibrationReport",
    "MetricAgreement",
    "auroc",
    "expected_side",
    "format_report",
    "judge_prompts_for",
    "load_calibration",
    "measure",
    "weaknesses",
    "write_report",
]
