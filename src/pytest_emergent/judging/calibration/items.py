"""Calibration files: labelled answers with the score bands a good judge should give them.

Formats: YAML (`answers: [...]` or a bare list) or JSONL, one record per answer. A record
from a run's `samples.jsonl` labelled by hand (add `aligned` / `coherent` bands) is accepted:
the question text is then read from its last user message. Errors name the file, the record
and the field.

A calibration file from elsewhere is data, read as question files are: at most
`MAX_CALIBRATION_BYTES`, YAML by the strict safe loader (a repeated key is an error), and no
value is turned into text unless it is a string or a number, so a few hundred bytes of YAML
aliases that spell out a hundred million list items cannot exhaust the machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pytest_emergent.errors import EmergentError
from pytest_emergent.judging.judge import CODE, REFUSAL
from pytest_emergent.spec import Question
from pytest_emergent.spec.validate import _got, _yaml_message
from pytest_emergent.spec.yaml_loader import TooLarge, read_capped, safe_load

#: the metrics a calibration file labels, and what their positive class is called
METRICS: dict[str, str] = {"aligned": "misaligned", "coherent": "incoherent"}
KINDS = ("aligned", "misaligned", "refusal", "code", "incoherent", "hard")
_LABELS = (REFUSAL, CODE)
#: the largest calibration file read (the bundled one, 551 labelled answers, is 116 kB)
MAX_CALIBRATION_BYTES = 16 * 2**20

class CalibrationError(EmergentError):
    """A calibration file that cannot be read; the message names file, record and field."""


@dataclass(frozen=True)
class CalibrationItem:
    """One labelled answer."""

    id: str
    question_id: str
    question: str
    answer: str
    #: metric -> (low, high) band, or the label "REFUSAL" / "CODE"
    expected: Mapping[str, tuple[float, float] | str]
    kind: str = ""
    reason: str = ""
    where: str = ""


def load_calibration(path: str | Path) -> list[CalibrationItem]:
    """Read a YAML or JSONL calibration file; errors name the file, record and field."""
    path = Path(path)
    try:
        text = read_capped(path, MAX_CALIBRATION_BYTES)
    except TooLarge as exc:
        raise CalibrationError(f"{path}: {exc}, the limit for a calibration file; split it "
                               "into several files") from None
    except UnicodeDecodeError as exc:
        raise CalibrationError(f"{path}: file is not valid UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read calibration file: {exc}") from exc
    records: list[tuple[str, Any]] = []
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise CalibrationError(f"{path}: line {number}: invalid JSON: {exc}") from exc
            except RecursionError:
                raise CalibrationError(f"{path}: line {number}: invalid JSON: nested too "
                                       "deeply") from None
    else:
        try:
            data = safe_load(text)
        except yaml.YAMLError as exc:
            raise CalibrationError(f"{path}: {_yaml_message(exc)}") from None
        if isinstance(data, dict):
            data = data.get("answers")
        if not isinstance(data, list):
            raise CalibrationError(f"{path}: expected a list of answers under `answers:`")
        records = [(f"answers[{i}]", entry) for i, entry in enumerate(data)]
    items = [_item(path, where, entry) for where, entry in records]
    if not items:
        raise CalibrationError(f"{path}: no labelled answers")
    seen: dict[str, str] = {}
    for item in items:
        if item.id in seen:
            raise CalibrationError(
                f"{path}: {item.where}: id {item.id!r} repeats {seen[item.id]}"
            )
        seen[item.id] = item.where
    return items


def _item(path: Path, where: str, entry: Any) -> CalibrationItem:
    def fail(message: str, fieldname: str | None = None) -> CalibrationError:
        name = entry.get("id") if isinstance(entry, dict) else None
        at = f"{where} ({name})" if isinstance(name, str | int) and name != "" else where
        return CalibrationError(
            f"{path}: {at}" + (f": field {fieldname!r}" if fieldname else "") + f": {message}"
        )

    if not isinstance(entry, dict):
        raise fail("each answer must be a mapping")
    question = entry.get("question")
    if question is None and isinstance(entry.get("messages"), list):
        users = [m.get("content") for m in entry["messages"]
                 if isinstance(m, dict) and m.get("role") == "user"]
        question = users[-1] if users else None
    for name, value in (("question_id", entry.get("question_id")), ("question", question),
                        ("answer", entry.get("answer"))):
        if not isinstance(value, str) or (name != "answer" and not value.strip()):
            raise fail("is required and must be a string", name)
    expected: dict[str, tuple[float, float] | str] = {}
    for metric in METRICS:
        if metric in entry and entry[metric] is not None:
            expected[metric] = _band(entry[metric], lambda m, f=metric: fail(m, f))
    if not expected:
        raise fail(f"labels none of {sorted(METRICS)} (give a [low, high] band)")
    # only strings and numbers become text: anything else is refused unprinted
    for name, types in (("id", (str, int)), ("sample_index", (str, int)), ("kind", (str,)),
                        ("reason", (str,))):
        value = entry.get(name)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            raise fail(f"must be {' or '.join(_TYPE_NAMES[t] for t in types)} (got "
                       f"{_got(value)})", name)
    kind = entry.get("kind") or ""
    if kind and kind not in KINDS:
        raise fail(f"unknown kind {kind[:40]!r}; choose one of {', '.join(KINDS)}", "kind")
    default_id = f"{entry['question_id']}-{entry.get('sample_index', where)}"
    return CalibrationItem(
        id=str(entry.get("id") or default_id),
        question_id=str(entry["question_id"]),
        question=str(question),
        answer=str(entry["answer"]),
        expected=expected,
        kind=kind,
        reason=entry.get("reason") or "",
        where=where,
    )


_TYPE_NAMES = {str: "a string", int: "an integer"}


def _band(value: Any, fail: Any) -> tuple[float, float] | str:
    if isinstance(value, str):
        if value.upper() in _LABELS:
            return value.upper()
        raise fail(f"must be a [low, high] band or one of {', '.join(_LABELS)} (got "
                   f"{_got(value)})")
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value))
    if not ok:
        raise fail(f"must be a [low, high] band of numbers (got {_got(value)})")
    lo, hi = float(value[0]), float(value[1])
    if not 0.0 <= lo <= hi <= 100.0:
        raise fail(f"band must satisfy 0 <= low <= high <= 100 (got {value!r})")
    return lo, hi


def judge_prompts_for(
    items: Sequence[CalibrationItem], questions: Iterable[Question], source: str = ""
) -> dict[str, Mapping[str, str]]:
    """question_id -> its judge prompt templates; every item's question must be known."""
    by_id = {q.id: q.judge_prompts for q in questions}
    for item in items:
        if item.question_id not in by_id:
            raise CalibrationError(
                f"{source}: {item.where} ({item.id}): field 'question_id': unknown question "
                f"{item.question_id!r}; the question files given define "
                f"{', '.join(sorted(by_id)) or 'none'}"
            )
        missing = [m for m in item.expected if m not in by_id[item.question_id]]
        if missing:
            raise CalibrationError(
                f"{source}: {item.where} ({item.id}): question {item.question_id!r} has no "
                f"judge prompt for {', '.join(missing)}"
            )
    return by_id
