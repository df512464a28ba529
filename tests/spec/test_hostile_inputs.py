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
