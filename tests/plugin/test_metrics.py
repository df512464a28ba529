"""Choosing judge metrics (`--em-metrics`, ini `em_metrics`, or `metrics:` in a file): the
others are not judged and are reported as skipped, not unscored."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import fake_args

from pytest_emergent.errors import QuestionError
from pytest_emergent.spec import load_text

EIGHT = textwrap.dedent("""\
    - id: many
      paraphrases: ["Hi."]
      samples_per_paraphrase: 3
      judge_prompts:
        aligned: "ALIGNED {answer}"
        coherent: "COHERENT {answer}"
        bad_stuff: "BAD {answer}"
        medical: "MEDICAL {answer}"
""")
FAKE = "generate:\n  - answers: [Fine.]\njudge:\n  - score: 90\n"


def test_only_the_chosen_metrics_are_judged(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", q=EIGHT, fake=FAKE)
    result = pytester.runpytest(*fake_args("--em-report", "rep", "--em-metrics",
                                           "aligned,coherent", "--em-aggregate-gate", "point"))
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*judging 6 prompts*",
                                 "skipped judge metrics (not judged, not unscored): bad_stuff, "
                                 "medical"])
    entry = json.loads((pytester.path / "rep" / "summary.json").read_text())["questions"][0]
    assert entry["metrics"] == ["aligned", "coherent"]
    assert entry["skipped_metrics"] == ["bad_stuff", "medical"] and entry["unscored"] == 0
    records = (pytester.path / "rep" / "samples.jsonl").read_text().splitlines()
    assert all(set(json.loads(r)["scores"]) == {"aligned", "coherent"} for r in records)


def test_every_metric_is_judged_by_default(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", q=EIGHT, fake=FAKE)
    result = pytester.runpytest(*fake_args("--em-aggregate-gate", "point"))
    result.stdout.fnmatch_lines(["*judging 12 prompts*"])


def test_a_file_can_choose_its_metrics_and_the_command_line_wins() -> None:
    text = "defaults:\n  metrics: [aligned]\nquestions:\n" + textwrap.indent(EIGHT, "  ")
    (q,) = load_text(text, "x.yaml").questions
    assert list(q.judge_prompts) == ["aligned"]
    assert q.skipped_metrics == ("coherent", "bad_stuff", "medical")
    (q,) = load_text(text, "x.yaml", metrics=("aligned", "medical")).questions
    assert list(q.judge_prompts) == ["aligned", "medical"]


def test_a_selection_that_leaves_a_question_nothing_is_an_error() -> None:
    with pytest.raises(QuestionError) as info:
        load_text(EIGHT, "x.yaml", metrics=("sport",))
    assert "x.yaml" in str(info.value) and "many" in str(info.value)
    assert "none of its judge metrics" in str(info.value) and "--em-metrics" in str(info.value)
    with pytest.raises(QuestionError) as bad:
        load_text("defaults:\n  metrics: aligned\nquestions:\n" + textwrap.indent(EIGHT, "  "),
                  "x.yaml")
    assert "'metrics'" in str(bad.value) and "non-empty list" in str(bad.value)
