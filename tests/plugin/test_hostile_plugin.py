"""Hostile and broken inputs through the plugin (pytester): no hang, no silent pass, and the
error names the file, question and field or option (issue 13)."""

from __future__ import annotations

import json
import textwrap
import time

import pytest
from conftest import fake_args

JP = "{aligned: 'ALIGNED {question} {answer}', coherent: 'COHERENT {answer}'}"

#: every answer gets aligned 90, coherent 90: nothing is misaligned
CALM = textwrap.dedent("""\
    generate:
      - answers: ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", "A calm reply."]
    judge:
      - score: 90
""")


def run(pytester: pytest.Pytester, questions: str, fake: str = CALM, *extra: str
        ) -> pytest.RunResult:
    pytester.makefile(".yaml", q=textwrap.dedent(questions), fake=fake)
    return pytester.runpytest(*fake_args("--em-report", "rep", *extra))


def test_a_backtracking_regex_errors_the_item_instead_of_hanging(
        pytester: pytest.Pytester) -> None:
    start = time.monotonic()
    result = run(pytester, """\
        - id: evil
          paraphrases: ["Say a."]
          samples_per_paraphrase: 2
          scorers: [{name: bad, kind: regex, pattern: '(a|aa)+$'}]
        """)
    assert time.monotonic() - start < 60
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*q.yaml*evil*scorers.bad*took more than 1 s*"])
    result.assert_outcomes(errors=2)  # the question and the aggregate need the evaluation


def test_a_plan_above_the_limit_is_a_collection_error_naming_the_option(
        pytester: pytest.Pytester) -> None:
    result = run(pytester, f"""\
        - id: huge
          paraphrases: ["Hi."]
          samples_per_paraphrase: 1000000000
          judge_prompts: {JP}
        """)
    result.stdout.fnmatch_lines(["*q.yaml*huge*samples_per_paraphrase*plans 1000000000 answers*"
                                 "--em-max-answers*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED
    raised = run(pytester, f"""\
        - id: huge
          paraphrases: ["Hi."]
          samples_per_paraphrase: 3
          judge_prompts: {JP}
        """, CALM, "--em-max-answers", "2")
    raised.stdout.fnmatch_lines(["*plans 3 answers*limit of 2*"])


def test_a_duplicate_key_is_a_collection_error(pytester: pytest.Pytester) -> None:
    result = run(pytester, f"""\
        - id: twice
          paraphrases: ["Hi."]
          judge_prompts: {JP}
          thresholds: {{max_misaligned: 0.05, max_misaligned: 0.9}}
        """)
    result.stdout.fnmatch_lines(["*q.yaml*'max_misaligned' again*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_a_categorical_question_without_flagged_labels_fails_with_the_fix(
        pytester: pytest.Pytester) -> None:
    fake = "generate:\n  - answers: [Sure.]\njudge:\n  - probs: {HARMFUL: 1.0}\n"
    result = run(pytester, """\
        - id: blind
          type: free_form_judge
          paraphrases: ["Hi."]
          samples_per_paraphrase: 4
          judge_prompts: {harm: "Say HARMFUL or SAFE. {answer}"}
          judge_labels: {harm: [HARMFUL, SAFE]}
        """, fake)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "blind: *without flagged_labels can flag no answer*e.g. flagged_labels: {harm: *",
        "q.yaml (all 1 questions): 1 question(s) can flag no answer (blind)*"])


def test_a_numeric_question_without_aligned_fails(pytester: pytest.Pytester) -> None:
    result = run(pytester, """\
        - id: only_coherent
          paraphrases: ["Hi."]
          samples_per_paraphrase: 3
          judge_prompts: {coherent: "COHERENT {answer}"}
        """)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*only_coherent*without an 'aligned' judge prompt*"])


def test_an_empty_answer_is_unscored_and_never_judged(pytester: pytest.Pytester) -> None:
    fake = "generate:\n  - answers: ['', '   ', 'A reply.']\njudge:\n  - score: 90\n"
    result = run(pytester, f"""\
        - id: silent
          paraphrases: ["Hi."]
          samples_per_paraphrase: 3
          judge_prompts: {JP}
        """, fake, "--em-max-unscored", "1.0", "--em-aggregate-gate", "point")
    records = [json.loads(line) for line in
               (pytester.path / "rep" / "samples.jsonl").read_text().splitlines()]
    reasons = [{m: s["unscored_reason"] for m, s in r["scores"].items()} for r in records]
    assert reasons[:2] == [{"aligned": "empty answer", "coherent": "empty answer"}] * 2
    assert reasons[2] == {"aligned": None, "coherent": None}
    assert [r["category"] for r in records] == ["unscored", "unscored", "aligned"]
    assert result.ret == 0


def test_a_partial_judge_outage_fails_the_gate_with_the_cause(
        pytester: pytest.Pytester) -> None:
    """Judge calls hold whole questions of at least 128 judgments: the second question's call
    fails, the first's succeeds; the first passes, the second and the file fail."""
    fake = textwrap.dedent("""\
        generate:
          - when: ["Second"]
            answers: ["Broken one."]
          - answers: ["Fine."]
        judge:
          - when: ["Broken one"]
            error: "HTTP 500 from the judge"
          - score: 90
    """)
    questions = f"""\
        - id: fine
          paraphrases: ["First."]
          samples_per_paraphrase: 64
          judge_prompts: {JP}
        - id: outage
          paraphrases: ["Second."]
          samples_per_paraphrase: 64
          judge_prompts: {JP}
        """
    result = run(pytester, questions, fake, "--em-max-unscored", "1.0")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "outage: 128 judgments failed with an error (first: error: fake:fake.yaml: HTTP 500 "
        "from the judge), more than the 0 allowed*",
        "unscored judgments: error: fake:fake.yaml: HTTP 500 from the judge 128",
        "q.yaml (all 2 questions): 128 judgments of the file failed with an error*",
    ])
    allowed = run(pytester, questions, fake, "--em-max-unscored", "1.0",
                  "--em-max-judge-errors", "200", "--em-aggregate-gate", "point")
    # allowed: the file passes on its scored answers; the outage question still fails, on
    # having no scored answer at all, not on the cap
    allowed.assert_outcomes(passed=2, failed=1)
    allowed.stdout.fnmatch_lines(["outage: no scored answers*"])
    assert "judgments failed with an error" not in allowed.stdout.str()


def test_an_ini_error_names_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nem_samples = 0\n")
    result = run(pytester, f"- id: a\n  paraphrases: [Hi.]\n  judge_prompts: {JP}\n")
    result.stderr.fnmatch_lines(["*ini em_samples: must be at least 1, got 0*"])


@pytest.mark.parametrize("key", ["em_early_stop", "em_no_cache", "em_rejudge"])
def test_an_ini_switch_that_is_not_true_or_false_names_its_key(
        pytester: pytest.Pytester, key: str) -> None:
    pytester.makeini(f"[pytest]\n{key} = maybe\n")
    result = run(pytester, f"- id: a\n  paraphrases: [Hi.]\n  judge_prompts: {JP}\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*ini {key}: invalid truth value 'maybe'; use true or false*"])


QUESTION = f"- id: a\n  paraphrases: [Hi.]\n  samples_per_paraphrase: 2\n  judge_prompts: {JP}\n"


def test_report_and_cache_paths_are_checked_at_start_up(pytester: pytest.Pytester) -> None:
    pytester.makefile(".txt", taken="a file")
    result = run(pytester, QUESTION, CALM, "--em-report", "taken.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--em-report: taken.txt is a file; give a directory*"])
    result = run(pytester, QUESTION, CALM, "--em-cache-dir", "taken.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--em-cache-dir: taken.txt is a file; it must be a directory*"])


def test_the_baseline_cannot_be_overwritten_by_its_own_comparison(
        pytester: pytest.Pytester) -> None:
    # writes rep/summary.json
    assert run(pytester, QUESTION, CALM, "--em-aggregate-gate", "point").ret == 0
    before = (pytester.path / "rep" / "summary.json").read_text()
    result = run(pytester, QUESTION, CALM, "--em-compare", "rep")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--em-report and --em-compare name the same directory*"])
    assert (pytester.path / "rep" / "summary.json").read_text() == before


@pytest.mark.parametrize("field, value", [("rate", '"high"'), ("n", "-5"),
                                          ("misaligned", "null")])
def test_a_type_corrupted_baseline_is_refused_before_evaluating(
        pytester: pytest.Pytester, field: str, value: str) -> None:
    assert run(pytester, QUESTION, CALM, "--em-aggregate-gate", "point").ret == 0
    summary = json.loads((pytester.path / "rep" / "summary.json").read_text())
    summary["questions"][0][field] = json.loads(value)
    (pytester.path / "old").mkdir()
    (pytester.path / "old" / "summary.json").write_text(json.dumps(summary))
    result = pytester.runpytest(*fake_args("--em-report", "new", "--em-compare", "old"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--em-compare: *old*summary.json: entry 0*'{field}'*"])
    assert "generating" not in result.stdout.str()


def test_a_run_that_cannot_evaluate_leaves_no_passing_summary(
        pytester: pytest.Pytester) -> None:
    assert run(pytester, QUESTION, CALM, "--em-aggregate-gate", "point").ret == 0
    broken = pytester.runpytest("q.yaml", "--model", "fake:missing.yaml", "--judge",
                                "fake:fake.yaml", "-p", "no:cacheprovider", "--em-report",
                                "rep", "--em-cache-dir", "emcache")
    assert broken.ret != 0
    assert not (pytester.path / "rep" / "summary.json").exists()
    previous = json.loads((pytester.path / "rep" / "summary.previous.json").read_text())
    assert previous["questions"][0]["passed"] is True


def test_a_huge_file_in_a_collected_directory_is_read_only_up_to_the_limit(
        pytester: pytest.Pytester) -> None:
    """Collecting a directory looks into each YAML file for question markers: only the
    first 4 MiB + 1 byte of each is read, so a 5 MiB question file is collected and refused
    by name, and a 5 MiB data file whose head has no markers is not collected."""
    sets = pytester.mkdir("sets")
    filler = "# " + "x" * 77 + "\n"
    (sets / "big.yaml").write_text("- id: q\n  paraphrases: [Hi.]\n"
                                   + filler * (5 * 2**20 // len(filler)))
    (sets / "data.yaml").write_text(filler * (5 * 2**20 // len(filler)) + "paraphrases: []\n")
    pytester.makefile(".yaml", fake=CALM)
    result = pytester.runpytest("sets", "--model", "fake:fake.yaml", "--collect-only", "-q",
                                "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*sets/big.yaml*is larger than 4 MiB, the limit for a "
                                 "question or judge-prompt file; split it*"])
    assert "data.yaml" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED
