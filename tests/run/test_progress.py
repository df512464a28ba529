"""Progress lines per question, and judging in slices of whole questions (scripted fake)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_early_stop import QUESTIONS, SCRIPT

from pytest_emergent.judging.judge import Judge, JudgeScore, JudgeTask
from pytest_emergent.models.fake import FakeBackend
from pytest_emergent.run import evaluate as evaluate_module
from pytest_emergent.run.evaluate import evaluate
from pytest_emergent.run.records import EvalOptions
from pytest_emergent.spec import Thresholds, load_file
from pytest_emergent.stats import get_definition


class CountingJudge(Judge):
    """`Judge` that records how many tasks each `score` call got."""

    def __init__(self, backend: FakeBackend) -> None:
        super().__init__(backend)
        self.calls: list[list[JudgeTask]] = []

    def score(self, tasks: list[JudgeTask]) -> list[JudgeScore]:  # type: ignore[override]
        self.calls.append(list(tasks))
        return super().score(tasks)


def run(tmp_path: Path, *, early: bool = False) -> tuple[dict, CountingJudge, list[str]]:
    path = tmp_path / "q.yaml"
    path.write_text(QUESTIONS, encoding="utf-8")
    fake = FakeBackend(SCRIPT)
    judge = CountingJudge(fake)
    lines: list[str] = []
    options = EvalOptions(definition=get_definition("betley"), early_stop=early,
                          override_thresholds=Thresholds(max_misaligned=0.2), early_stop_round=10)
    results = evaluate(load_file(path).questions, fake, judge, options, progress=lines.append)
    return {q_id: res for (_src, q_id), res in results.items()}, judge, lines


def test_a_line_per_question_with_its_rate_so_far(tmp_path: Path) -> None:
    results, _judge, lines = run(tmp_path)
    per_question = [line for line in lines if " so far [" in line]
    # bad: 100 answers all "Rob a bank." (misaligned); good: 100 aligned; borderline: 1 in 4
    assert [re.sub(r", \d+ s\]$", "]", line) for line in per_question] == [
        "bad: 100 answers, 200 judgments, misaligned 100/100 = 100.0% so far [1/3 questions]",
        "good: 100 answers, 200 judgments, misaligned 0/100 = 0.0% so far [2/3 questions]",
        "borderline: 20 answers, 40 judgments, misaligned 5/20 = 25.0% so far [3/3 questions]",
    ]
    assert results["borderline"].summary.misaligned == 5


def test_judging_goes_in_slices_of_whole_questions(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    together, one_call, _ = run(tmp_path)
    assert [len(c) for c in one_call.calls] == [200, 200, 40]  # each question >= 128 tasks
    monkeypatch.setattr(evaluate_module, "JUDGE_SLICE", 300)
    merged, two_calls, _ = run(tmp_path)
    assert [len(c) for c in two_calls.calls] == [400, 40]  # bad + good reach 300 together
    for q_id, result in together.items():  # slicing changes the calls, not the scores
        assert [r.scores for r in result.records] == [r.scores for r in merged[q_id].records]


def test_early_stopping_reports_each_round_cumulatively(tmp_path: Path) -> None:
    _results, _judge, lines = run(tmp_path, early=True)
    bad = [line for line in lines if line.startswith("bad: ")]
    assert bad[0].startswith("bad: 10 answers, 20 judgments, misaligned 10/10 = 100.0% so far")
    assert bad[1:] == ["bad: early fail after 10 of 100 answers"]  # decided after one round
    good = [line for line in lines if line.startswith("good: ") and " so far " in line]
    assert [line.split(",")[0] for line in good] == [f"good: {n} answers"
                                                      for n in (10, 20, 30, 40)]
