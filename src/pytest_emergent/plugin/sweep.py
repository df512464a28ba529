"""Checkpoint sweeps in pytest: `--model` given several times, as a quoted glob
(``--model 'run/checkpoint-*'``) or as a fine-tune's folder of ``checkpoint-STEP``
directories collects every question once per model (``quick_buck[checkpoint-20]``), and the
session ends with one sweep table and report. `--em-monitor` adds the direction monitor.

The work is in `run/sweep.py`, `run/sweep_run.py`, `run/monitor.py` and `report/sweep.py`;
this module only checks options, names items and prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_emergent.run.sweep import SweepEntry
    from pytest_emergent.run.sweep_run import SweepRun

#: the item's model label in a sweep
model_key = pytest.StashKey[str]()
sweep_key: pytest.StashKey[SweepRun] = pytest.StashKey()

__all__ = ["check_model_paths", "check_sweep", "item_name", "model_key", "monitor_source",
           "sweep_entries", "sweep_key", "sweep_summary"]


def sweep_entries(specs: Sequence[str], name: str) -> tuple[SweepEntry, ...]:
    """The models under test, expanded; a pattern that matches nothing is a usage error."""
    from pytest_emergent.errors import EmergentError
    from pytest_emergent.run.sweep import expand_models

    try:
        return tuple(expand_models(specs, name=name))
    except EmergentError as exc:
        raise pytest.UsageError(str(exc)) from None


def monitor_source(source: str | None, name: str) -> str | None:
    """--em-monitor: `calibration`, a calibration file or a saved direction (.json)."""
    from pytest_emergent.run.monitor import BUNDLED

    if source is None or source == BUNDLED:
        return source
    if not Path(source).expanduser().is_file():
        raise pytest.UsageError(f"{name}: {source} is not a file; give 'calibration' (the "
                                "bundled labels), a calibration file (YAML/JSONL) or a saved "
                                "direction (.json)")
    return str(Path(source).expanduser())


def check_model_paths(config: pytest.Config) -> None:
    """With --model given, a model directory among the paths to test is a glob the shell
    expanded before pytest saw it (its matches after the first became test paths)."""
    if not config.getoption("model"):
        return
    for arg in config.args:
        path = Path(arg.split("::")[0])
        if path.is_dir() and any((path / f).is_file()
                                 for f in ("config.json", "adapter_config.json")):
            raise pytest.UsageError(
                f"{arg} was given as a path to test, but it is a model directory: the shell "
                "expanded a --model pattern. Quote it (--model 'run/checkpoint-*') or repeat "
                "--model for each checkpoint")


def check_sweep(config: pytest.Config, entries: Sequence[SweepEntry], *,
                exclusive: Sequence[tuple[str, object]]) -> None:
    """Refuse what a sweep cannot do yet."""
    if len(entries) < 2:
        return
    if getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("a checkpoint sweep (several --model) runs in one process; "
                                "drop -n")
    for option, value in exclusive:
        if value:
            raise pytest.UsageError(f"{option} works on one model; run it per checkpoint "
                                    f"(a sweep was given {len(entries)} models)")


def item_name(name: str, label: str | None) -> str:
    """`quick_buck[checkpoint-20]`, `quick_buck[json-checkpoint-20]`, or `name` alone."""
    if label is None:
        return name
    return f"{name[:-1]}-{label}]" if name.endswith("]") else f"{name}[{label}]"


def sweep_summary(reporter: pytest.TerminalReporter, sweep: SweepRun) -> None:
    """Each model's table under its own heading, then the sweep table."""
    from pytest_emergent.report.sweep import sweep_lines
    from pytest_emergent.report.text import summary_lines

    if len(sweep.entries) > 1:
        for entry in sweep.entries:
            lines = summary_lines(sweep.runs[entry.label])
            if lines:
                spec = "" if entry.spec == entry.label else f" ({entry.spec})"
                reporter.write_sep("-", f"model {entry.label}{spec}")
                for line in lines:
                    reporter.write_line(line)
    else:
        for line in summary_lines(sweep.first):
            reporter.write_line(line)
    lines = sweep_lines(sweep)
    if lines:
        reporter.write_sep("=", "emergent checkpoint sweep" if len(sweep.entries) > 1
                           else "emergent direction monitor")
        for line in lines:
            reporter.write_line(line)
