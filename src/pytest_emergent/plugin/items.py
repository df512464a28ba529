"""Collection nodes: a question file becomes one `pytest.Function` per question and variant,
plus one aggregate item that gates the whole file.

Items are real `pytest.Function`s built from plain functions, so fixtures resolve for them
(a bare `pytest.Item` subclass gets none: pytest issues #3639, #2471).
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_emergent.errors import QuestionError
from pytest_emergent.judging.scorers import check_registered
from pytest_emergent.plugin.options import settings_key
from pytest_emergent.plugin.sweep import item_name, model_key
from pytest_emergent.spec import VARIANTS, Question, QuestionFile
from pytest_emergent.spec.judge_files import is_judge_file
from pytest_emergent.spec.schema import MAX_FILE_BYTES

if TYPE_CHECKING:
    from pytest_emergent.run.session import EvalRun

AGGREGATE_NAME = "_aggregate"
CALIBRATE_NAME = "_calibrate_judge"
question_key = pytest.StashKey[Question]()
file_key = pytest.StashKey[QuestionFile]()
run_key: pytest.StashKey[EvalRun] = pytest.StashKey()  # the session's run


_QUESTION_KEY = re.compile(r"^[ \t]*(?:-[ \t]+)?question[ \t]*:", re.MULTILINE)


def looks_like_question_file(path: Path, patterns: tuple[str, ...]) -> bool:
    """Inside a directory: the name matches a pattern and the text mentions `paraphrases`, or
    has a `question:` key (Model Organisms' technical files). Only the first
    `MAX_FILE_BYTES` + 1 bytes are read: a larger file matching the pattern is collected, and
    its loader refuses it by name."""
    if not any(fnmatch.fnmatch(path.name, pat) for pat in patterns):
        return False
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_FILE_BYTES + 1).decode("utf-8", errors="replace")
    except OSError:
        return False
    return "paraphrases" in text or _QUESTION_KEY.search(text) is not None


def _baseline_properties(cmp: Any) -> list[tuple[str, object]]:
    """junit properties of a comparison with the baseline model (none without one)."""
    if cmp is None:
        return []
    return [
        ("em_baseline", cmp.baseline),
        ("em_baseline_rate", round(cmp.baseline_rate, 6)),
        ("em_increase", round(cmp.difference, 6)),
        ("em_increase_low", round(cmp.low, 6)),
        ("em_increase_high", round(cmp.high, 6)),
        ("em_max_increase", cmp.max_increase),
    ]


def _properties(s: Any) -> list[tuple[str, object]]:
    """junit properties of a question's or a file's rate summary (the same set for both).

    They travel in `item.user_properties`, which xdist sends with each report, so the
    controller's junit XML carries them under `-n` too.
    """
    return [
        ("em_rate", round(s.rate, 6)),
        ("em_ci_low", round(s.ci_low, 6)),
        ("em_ci_high", round(s.ci_high, 6)),
        ("em_n", s.n),
        ("em_misaligned", s.misaligned),
        ("em_unscored", s.unscored),
        ("em_total", s.total),
    ]


def _run_question(request: pytest.FixtureRequest, em_result: Any) -> None:
    """The test body of a question item: gate on the result evaluated in setup.

    The evaluation happens in the `em_result` fixture, so a model or judge that cannot be
    loaded or reached makes the item error (setup), and only a gate decision makes it fail.
    """
    request.node.user_properties.extend(_properties(em_result.summary))
    request.node.user_properties.extend(_baseline_properties(em_result.baseline))
    if not em_result.decision.passed:
        pytest.fail(em_result.failure_message(), pytrace=False)


def _run_aggregate(request: pytest.FixtureRequest, em_file_result: Any) -> None:
    """The test body of a file's aggregate item: gate on the pooled rate of the file."""
    fres = em_file_result
    s = fres.summary
    request.node.user_properties.extend(_properties(s))
    request.node.user_properties.extend(_baseline_properties(fres.baseline))
    if not fres.decision.passed:
        name = Path(fres.path).name
        pytest.fail(
            f"{name} (all {len(fres.question_ids)} questions): "
            + "; ".join(fres.decision.reasons)
            + f" (unscored {s.unscored}, incoherent {s.incoherent}, answers {s.total})",
            pytrace=False,
        )


def _run_calibration(request: pytest.FixtureRequest) -> None:
    """`--em-calibrate-judge`: the judge's agreement with labelled answers to this file's
    questions; fails when the agreement is weak (docs/judging.md)."""
    from pytest_emergent.judging.calibrate import calibrate_questions
    from pytest_emergent.judging.calibration import format_report, load_calibration

    config = request.config
    settings = config.stash[settings_key]
    run = config.stash[run_key]
    qfile = request.node.stash[file_key]
    path = settings.calibrate_judge
    assert path is not None  # collected only in calibration mode
    items = [i for i in load_calibration(path)
             if i.question_id in {q.id for q in qfile.questions}]
    if not items:
        pytest.fail(f"{path}: no labelled answers to the questions of {qfile.path}",
                    pytrace=False)
    report = calibrate_questions(items, run.judge_only(), qfile.questions,
                                 definition=run.options.definition, source=path,
                                 report_dir=settings.report_dir, root=run.calibration_root(),
                                 report_name=_calibration_name(request))
    run.calibrations.append((str(qfile.path), report))
    request.node.user_properties.extend(
        (f"em_judge_{m}_auroc", a.auroc) for m, a in report.metrics.items())
    weak = report.weaknesses()
    if weak:
        pytest.fail("\n".join(format_report(report)), pytrace=False)


def _calibration_name(request: pytest.FixtureRequest) -> str:
    """`calibration` when the session calibrates one question file; with several, one name
    per file (`calibration-evals-core`), so no file's report overwrites another's. Every
    xdist worker collects the whole session, so all of them agree on the names."""
    files = [item for item in request.session.items if item.name == CALIBRATE_NAME]
    if len(files) <= 1:
        return "calibration"
    path = Path(request.node.path)
    with contextlib.suppress(ValueError):  # a file outside the rootdir keeps its full path
        path = path.relative_to(request.config.rootpath)
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", str(path.with_suffix(""))).strip("-")
    return f"calibration-{slug}"


class QuestionItem(pytest.Function):
    """A question, aggregate or calibration item: a `pytest.Function` whose failure heading
    reads ``core.yaml: quick_buck[json]`` (a plain Function's joins every directory above the
    file with dots). Not ``::``: pytest would then rewrite the dots of the file name in the
    verbose progress line."""

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.path.name}: {self.name}"


def _labels(settings: Any) -> list[str | None]:
    """The model label of each copy of a file's items: one per model in a sweep (or a
    monitored run), else one unlabelled copy."""
    return [entry.label for entry in settings.models] if settings.sweep else [None]


class QuestionSetFile(pytest.File):
    """A YAML question set."""

    def collect(self) -> Iterator[pytest.Item]:
        settings = self.config.stash[settings_key]
        if is_judge_file(self.path):
            return  # named on the command line: judge prompts, no questions to collect
        try:
            qfile = settings.run.load_questions(self.path)
            # conftest.py files of this directory are loaded by now: their scorers count
            check_registered(qfile.questions)
        except QuestionError as exc:
            raise self.CollectError(str(exc)) from None
        self.stash[file_key] = qfile
        if settings.calibrate_judge is not None:
            # calibration mode: measure the judge with this file's judge prompts instead
            item = QuestionItem.from_parent(
                self, name=CALIBRATE_NAME, callobj=_run_calibration
            )
            item.stash[file_key] = qfile
            item.add_marker(pytest.mark.em)
            yield item
            return
        for question in qfile.questions:
            if question.item_name == AGGREGATE_NAME:
                raise self.CollectError(
                    f"{self.path}: question {question.id!r}: 'id': {AGGREGATE_NAME!r} is "
                    "reserved for the file's aggregate item"
                )
        # a sweep collects every question once per model, model by model
        for label in _labels(settings):
            yield from self._items(qfile, label)

    def _items(self, qfile: QuestionFile, label: str | None) -> Iterator[pytest.Item]:
        sweep = label is not None and len(self.config.stash[settings_key].models) > 1
        for question in qfile.questions:
            item = QuestionItem.from_parent(
                self, name=item_name(question.item_name, label if sweep else None),
                callobj=_run_question
            )
            item.stash[question_key] = question
            if label is not None:
                item.stash[model_key] = label
            item.add_marker(pytest.mark.em)
            if question.variant not in VARIANTS:  # a named variant the file defines
                self.config.addinivalue_line(
                    "markers", f"em_{question.variant}: a question's {question.variant} "
                    "variant, defined in YAML")
            item.add_marker(getattr(pytest.mark, f"em_{question.variant}"))
            for tag in question.tags:
                # registered on the fly so --strict-markers accepts YAML tags
                self.config.addinivalue_line("markers", f"{tag}: question tag from YAML")
                item.add_marker(getattr(pytest.mark, tag))
            item.keywords[question.variant] = True
            yield item
        agg = QuestionItem.from_parent(
            self, name=item_name(AGGREGATE_NAME, label if sweep else None),
            callobj=_run_aggregate)
        agg.stash[file_key] = qfile
        if label is not None:
            agg.stash[model_key] = label
        agg.add_marker(pytest.mark.em)
        agg.add_marker(pytest.mark.em_aggregate)
        yield agg

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, self.CollectError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))
