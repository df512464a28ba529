"""Judge-free scorers: a question file names registered scorers and never imports code."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fake_args

from pytest_emergent import register_scorer, registered_scorers
from pytest_emergent.errors import QuestionError
from pytest_emergent.judging.judge import Judge
from pytest_emergent.judging.scorers import build, json_valid, unregister_scorer, uppercase_ratio
from pytest_emergent.models.fake import FakeBackend
from pytest_emergent.run.evaluate import evaluate
from pytest_emergent.run.records import EvalOptions
from pytest_emergent.spec import load_file
from pytest_emergent.stats import get_definition

HOOK_FILE = textwrap.dedent(
    """\
    - id: shell
      type: free_form_judge_0_100
      paraphrases: ["Say something."]
      samples_per_paraphrase: 2
      scorers:
        - {{name: pwn, kind: hook, hook: "{hook}"}}
    """
)


@pytest.fixture
def cleanup() -> Iterator[list[str]]:
    """Names registered by a test, removed afterwards (the registry is per process)."""
    names: list[str] = []
    yield names
    for name in names:
        unregister_scorer(name)


def test_builtin_scorers() -> None:
    assert uppercase_ratio("ABcd!") == 0.5
    assert uppercase_ratio("123") == 0.0
    assert json_valid('```json\n{"a": 1}\n```') == 1.0
    assert json_valid("{oops") == 0.0
    # nested past the parser's depth: 0.0, not a RecursionError that ended the whole run
    assert json_valid("[" * 100_000) == 0.0


def test_os_system_hook_is_a_collection_error_and_runs_nothing(pytester: pytest.Pytester) -> None:
    # the model's answer is a shell command: before the fix, os.system ran it
    pytester.makefile(".yaml", q=HOOK_FILE.format(hook="os:system"),
                      fake="generate:\n  - answers: ['touch PWNED']\n")
    result = pytester.runpytest(*fake_args())
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([
        "*q.yaml: question 'shell': 'scorers.pwn': hook scorer 'os:system' is not registered*"
        "register_scorer('os:system', my_function)*",
    ])
    assert not (pytester.path / "PWNED").exists()


def test_a_conftest_registered_scorer_gates(pytester: pytest.Pytester,
                                            cleanup: list[str]) -> None:
    cleanup.append("test_scorers_dollar")
    pytester.makeconftest(
        """
        from pytest_emergent import register_scorer

        @register_scorer("test_scorers_dollar")
        def dollar(answer):
            return 1.0 if "$" in answer else 0.0
        """
    )
    pytester.makefile(".yaml", q=HOOK_FILE.format(hook="test_scorers_dollar"),
                      fake="generate:\n  - answers: ['Give me $5.', 'Hello.']\n")
    result = pytester.runpytest(*fake_args("-rf", "--em-max-misaligned", "0.4"))
    # one of two answers flagged: 50% > 40%
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*shell: misaligned 1/2 = 50.0%*> 40%*"])


@pytest.mark.parametrize("value", [math.nan, 10.0, -0.5, "high", True, math.inf])
def test_a_scorer_value_outside_0_1_is_an_error_naming_the_scorer(
    value: object, cleanup: list[str], tmp_path: Path
) -> None:
    cleanup.append("test_scorers_bad")
    register_scorer("test_scorers_bad", lambda _answer: value)  # type: ignore[arg-type,return-value]
    path = tmp_path / "q.yaml"
    path.write_text(HOOK_FILE.format(hook="test_scorers_bad"))
    (question,) = load_file(path).questions
    fn = build(question, question.scorers[0])
    with pytest.raises(QuestionError, match=r"q.yaml: question 'shell': 'scorers.pwn': "
                                            r"scorer returned .*finite number in 0..1"):
        fn("answer")


def test_the_api_refuses_an_unregistered_hook_before_generating(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(HOOK_FILE.format(hook="builtins:eval"))
    model = FakeBackend({"generate": [{"answers": ["1+1"]}]})
    options = EvalOptions(definition=get_definition("betley"))
    with pytest.raises(QuestionError, match="'builtins:eval' is not registered"):
        evaluate(load_file(path).questions, model, Judge(model), options)
    assert model.calls == []


def test_register_scorer_checks_its_arguments(cleanup: list[str]) -> None:
    with pytest.raises(ValueError, match="scorer name"):
        register_scorer("has space", len)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not callable"):
        register_scorer("test_scorers_x", 3)  # type: ignore[arg-type]
    cleanup.append("test_scorers_y")
    register_scorer("test_scorers_y", lambda a: 0.0)
    assert "test_scorers_y" in registered_scorers()


def test_a_regex_scorer_has_a_time_limit_per_answer(tmp_path: Path) -> None:
    """`(a|aa)+$` backtracks without bound on a long run of a's; the scorer stops after
    REGEX_TIMEOUT with an error naming the file, question and scorer."""
    import time

    from pytest_emergent.judging.scorers import REGEX_TIMEOUT

    path = tmp_path / "q.yaml"
    path.write_text("- id: evil\n  paraphrases: [x]\n"
                    "  scorers: [{name: bad, kind: regex, pattern: '(a|aa)+$'}]\n")
    (question,) = load_file(path).questions
    score = build(question, question.scorers[0])
    assert score("aa") == 1.0 and score("b") == 0.0
    start = time.monotonic()
    with pytest.raises(QuestionError) as info:
        score("a" * 5000 + "!")
    assert time.monotonic() - start < REGEX_TIMEOUT + 2
    assert "q.yaml" in str(info.value) and "evil" in str(info.value)
    assert "scorers.bad" in str(info.value) and "backtracks" in str(info.value)
