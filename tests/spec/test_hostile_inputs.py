"""Question files are data: hostile or broken ones give a clear error naming the file,
question and field, in bounded time and memory (issue 13)."""

from __future__ import annotations

import textwrap
import time

import pytest

from pytest_emergent.errors import QuestionError
from pytest_emergent.spec import MAX_ANSWERS, load_text
from pytest_emergent.spec.templates import MAX_RENDERED

JP = "{aligned: 'A {question} {answer}', coherent: 'C {answer}'}"


def q(body: str) -> str:
    return "questions:\n  - id: q1\n    judge_prompts: " + JP + "\n" + textwrap.indent(
        textwrap.dedent(body), "    ")


def refused(text: str, **kwargs: object) -> str:
    with pytest.raises(QuestionError) as info:
        load_text(text, "evals/x.yaml", **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_a_repeated_key_is_an_error_naming_the_lines() -> None:
    text = q("""\
        paraphrases: [hi]
        thresholds:
          max_misaligned: 0.05
          max_misaligned: 0.9
    """)
    msg = refused(text)
    assert "evals/x.yaml" in msg and "'max_misaligned' again" in msg
    assert "line 7, column 7" in msg and "first 'max_misaligned' at line 6" in msg


def test_a_yaml_merge_may_still_override_merged_keys() -> None:
    text = textwrap.dedent("""\
        defaults: &d
          samples_per_paraphrase: 2
          temperature: 0.5
        questions:
          - <<: *d
            id: q1
            temperature: 0.0
            paraphrases: [hi]
            judge_prompts: {aligned: 'A {answer}'}
    """)
    (question,) = load_text(text, "evals/x.yaml").questions
    assert question.temperature == 0.0 and question.samples_per_paraphrase == 2


@pytest.mark.parametrize("template, says", [
    ("{{ 'a' * 3000000000 }}", "repeats a str of length 1 3000000000 times"),
    ("{{ ([1] * 1000) * 1000000 }}", "repeats a list of length 1000"),
    ("{{ 10 ** 1000000000 }}", "10 ** 1000000000, a number too large"),
    ("{% for a in range(100000) %}{% for b in range(100000) %}lol{% endfor %}{% endfor %}",
     f"renders to more than {MAX_RENDERED} characters"),
    ("{% set s = 'x' * 90000 %}{{ s }}{{ s }}", f"renders to more than {MAX_RENDERED}"),
])
def test_jinja_cannot_allocate_gigabytes(template: str, says: str) -> None:
    start = time.monotonic()
    msg = refused(q(f'paraphrases: ["{template}"]\n'))
    assert time.monotonic() - start < 5
    assert "question 'q1'" in msg and "paraphrases[0]" in msg and says in msg


def test_jinja_below_the_cap_still_renders() -> None:
    text = q('paraphrases: ["{{ \'ab\' * 3 }} {{ 2 ** 10 }}"]\n')
    assert load_text(text, "evals/x.yaml").questions[0].paraphrases == ("ababab 1024",)


def test_a_plan_above_the_limit_is_refused_before_anything_is_allocated() -> None:
    start = time.monotonic()
    msg = refused(q("paraphrases: [a, b]\nsamples_per_paraphrase: 1000000000\n"))
    assert time.monotonic() - start < 5
    assert "plans 2000000000 answers (2 paraphrases x 1000000000 samples)" in msg
    assert f"limit of {MAX_ANSWERS}" in msg and "--em-max-answers" in msg
    assert "samples_per_paraphrase" in msg


def test_the_limit_can_be_raised_and_applies_to_the_samples_override() -> None:
    text = q("paraphrases: [a, b]\nsamples_per_paraphrase: 6000\n")
    assert load_text(text, "x.yaml", max_answers=12_000).questions[0].n_samples == 12_000
    assert "plans 20 answers" in refused(q("paraphrases: [a, b]\n"), samples_override=10,
                                         max_answers=19)


DOUBLING = "{% set x = 'a' * 90000 %}" + "{% set x = x ~ x %}" * 13 + "{{ x | length }}"
MACRO = ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
         "{{ f(40) }}")


@pytest.mark.parametrize("template, says", [
    ("{{ 'a' | center(500000000) }}", "needed more than 256 MiB of memory"),
    (DOUBLING, "needed more than 256 MiB of memory"),  # 1.25 GB before the budget
    ("{{ '%0500000000d' % 1 }}", "needed more than 256 MiB of memory"),
    (MACRO, "took more than 0.5 s of CPU time"),  # 2**40 calls that print nothing
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
     "took more than 0.5 s of CPU time"),
])
def test_jinja_that_builds_text_or_loops_without_printing_runs_out_of_budget(
        monkeypatch: pytest.MonkeyPatch, template: str, says: str) -> None:
    """Filters, `~` joins, recursive macros and silent loops passed the sandbox's checks
    (a 1 kB paraphrase took 1.25 GB, a macro hours); now a memory and CPU budget stops
    them with the file, question and field named."""
    from pytest_emergent.spec import budget

    monkeypatch.setattr(budget, "SECONDS", 0.5)
    start = time.monotonic()
    msg = refused(q(f'paraphrases: ["{template}"]\n'))
    assert time.monotonic() - start < 10
    assert "question 'q1'" in msg and "paraphrases[0]" in msg
    assert "too expensive to render" in msg
    # the memory cases may run out of their (lowered) CPU time first on a slow machine
    assert says in msg or "took more than 0.5 s of CPU time" in msg


def test_a_regular_expression_that_expands_as_it_compiles_is_refused() -> None:
    pattern = "(?:(?:a{1000}){1000}){1000}"  # gigabytes in the regex module's compiler
    msg = refused(q(f"paraphrases: [hi]\nscorers: [{{name: r, kind: regex, pattern: "
                    f"'{pattern}'}}]\n"))
    assert "scorers[0]" in msg and "too expensive to compile" in msg
    # whichever part of the budget runs out first: memory alone, CPU on a loaded machine
    assert "needed more than 256 MiB" in msg or "took more than 5 s of CPU time" in msg


def test_literal_texts_and_files_are_bounded(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    from pytest_emergent.spec import load_file
    from pytest_emergent.spec.schema import MAX_FILE_BYTES

    long = "x" * (MAX_RENDERED + 1)  # no braces: it used to skip every check
    msg = refused(q(f"paraphrases: [{long}]\n"))
    assert "paraphrases[0]" in msg and f"more than the limit of {MAX_RENDERED}" in msg
    big = Path(str(tmp_path)) / "big.yaml"
    big.write_text(q("paraphrases: [hi]\n") + "#" * MAX_FILE_BYTES)
    with pytest.raises(QuestionError, match=r"big\.yaml: is larger than 4 MiB"):
        load_file(big)


def test_a_file_of_many_questions_has_a_total_limit() -> None:
    body = "".join(f"  - id: q{i}\n    paraphrases: [a]\n    samples_per_paraphrase: 9000\n"
                   f"    judge_prompts: {JP}\n" for i in range(12))
    msg = refused("questions:\n" + body)
    assert "question 'q11'" in msg and "brings the file's plan to 108000 answers" in msg
    assert f"limit of {10 * MAX_ANSWERS} per file" in msg
    assert len(load_text("questions:\n" + body, "x.yaml", max_answers=20_000).questions) == 12
    # a lowered per-question limit leaves the file's at the default
    small = "".join(f"  - id: s{i}\n    paraphrases: [a]\n    samples_per_paraphrase: 8\n"
                    f"    judge_prompts: {JP}\n" for i in range(18))
    assert len(load_text("questions:\n" + small, "x.yaml", max_answers=10).questions) == 18


def test_a_fake_script_a_file_names_as_baseline_is_read_within_the_budget(
        tmp_path: pytest.TempPathFactory) -> None:
    """A question file may name `baseline: fake:PATH`; the script's fingerprint spelled out
    every YAML alias (427 bytes took 1.6 GB), so it is read as question files are."""
    from pathlib import Path

    from pytest_emergent.errors import ModelSpecError
    from pytest_emergent.models.fake import FakeBackend

    lines = ["generate:", "  - {when: [never], answers: &a0 [xxxxxxxxxxxxxxxx]}"]
    lines += [f"  - {{when: [never], answers: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]}}"
              for i in range(1, 9)]
    script = Path(str(tmp_path)) / "evil.yaml"
    script.write_text("\n".join(lines) + "\n")
    # whichever part of the budget runs out first (memory here alone; CPU on a busy worker)
    with pytest.raises(ModelSpecError, match=r"evil\.yaml: the script is too large to read: "
                       r"it (needed more than 256 MiB|took more than 5 s of CPU)"):
        FakeBackend.from_file(script)
