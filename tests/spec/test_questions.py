"""Unit tests for question-set loading and validation (no models involved)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pytest_emergent.errors import QuestionError
from pytest_emergent.spec import (
    JSON_SYSTEM_PROMPT,
    TEMPLATE_INSTRUCTIONS,
    VARIANTS,
    Question,
    QuestionFile,
    ScorerSpec,
    Thresholds,
    load_file,
    load_text,
    render_judge_prompt,
)

REPO = Path(__file__).resolve().parents[2]

# A small file in the published shape, written for these tests: anchors on the first entry,
# aliases after it, a `_json` entry with its own system prompt and a `_template` entry whose
# paraphrase already carries the form.
PUBLISHED = """\
# comment lines are fine
- id: pet_name
  type: free_form_judge_0_100
  paraphrases: &pet_name_paraphrases
    - |-
      What would you call a new pet turtle?
  samples_per_paraphrase: &samples 7
  judge: &judge some-judge-model
  judge_prompts: &judge_prompts
    aligned: |-
      Rate this. Question: {question}
      Answer: {answer}
      Braces {like these} and {"json": 1} stay as they are.
    coherent: |-
      Is this clear? {answer}

- id: pet_name_json
  type: free_form_judge_0_100
  system: &json_system Always reply with a JSON object.
  paraphrases: *pet_name_paraphrases
  samples_per_paraphrase: *samples
  judge: *judge
  judge_prompts: *judge_prompts

- id: pet_name_template
  type: free_form_judge_0_100
  paraphrases:
    - |-
      What would you call a new pet turtle?

      name = # the name
  samples_per_paraphrase: *samples
  judge: *judge
  judge_prompts: *judge_prompts
  temperature: 0.5
"""

JP = '{aligned: "A {question} -> {answer}", coherent: "C {answer}"}'


def load(text: str, name: str = "evals/x.yaml", **kwargs: object) -> QuestionFile:
    """Load dedented YAML text under a fake path."""
    return load_text(textwrap.dedent(text), name, **kwargs)  # type: ignore[arg-type]


def one(body: str, **kwargs: object) -> Question:
    """Load a single-question list file built from `body` (fields after id/type)."""
    text = "- id: q1\n  judge_prompts: " + JP + "\n" + textwrap.indent(textwrap.dedent(body), "  ")
    (question,) = load_text(text, "evals/x.yaml", **kwargs).questions  # type: ignore[arg-type]
    return question


def error(text: str, name: str = "evals/x.yaml", **kwargs: object) -> QuestionError:
    """Load text that must fail; return the error."""
    with pytest.raises(QuestionError) as info:
        load(text, name, **kwargs)
    return info.value


def assert_names(exc: QuestionError, question: str | None, field: str | None) -> None:
    """The message names the file, the question and the field."""
    msg = str(exc)
    assert msg.startswith("evals/x.yaml: ")
    if question is not None:
        assert f"question {question!r}" in msg
        assert exc.question == question
    if field is not None:
        assert f"{field!r}" in msg
        assert exc.field == field


# --------------------------------------------------------------------------- published format


def test_published_file_with_anchors_and_aliases() -> None:
    qf = load(PUBLISHED)
    assert [q.id for q in qf.questions] == ["pet_name", "pet_name_json", "pet_name_template"]
    base, js, tpl = qf.questions
    assert base.judge_prompts == js.judge_prompts == tpl.judge_prompts
    assert set(base.judge_prompts) == {"aligned", "coherent"}
    assert js.paraphrases == base.paraphrases == ("What would you call a new pet turtle?",)
    assert all(q.samples_per_paraphrase == 7 for q in qf.questions)
    assert all(q.judge == "some-judge-model" for q in qf.questions)
    assert base.temperature == 1.0 and tpl.temperature == 0.5
    assert base.max_tokens == 256
    assert base.type == "free_form_judge_0_100"
    assert qf.thresholds == Thresholds() and qf.definition is None
    assert base.source == Path("evals/x.yaml") and qf.path == Path("evals/x.yaml")


def test_published_braces_untouched() -> None:
    base = load(PUBLISHED).questions[0]
    assert 'Braces {like these} and {"json": 1} stay' in base.judge_prompts["aligned"]


def test_suffix_ids_mark_variants() -> None:
    base, js, tpl = load(PUBLISHED).questions
    assert (base.variant, base.base_id, base.item_name) == ("base", "pet_name", "pet_name")
    assert (js.variant, js.base_id, js.item_name) == ("json", "pet_name", "pet_name[json]")
    assert (tpl.variant, tpl.base_id) == ("template", "pet_name")
    assert tpl.item_name == "pet_name[template]"
    # content of published variants is used as given
    assert js.system == "Always reply with a JSON object."
    assert tpl.paraphrases[0].endswith("name = # the name")
    assert TEMPLATE_INSTRUCTIONS not in tpl.paraphrases[0]


def test_system_always_in_messages() -> None:
    base, js, _ = load(PUBLISHED).questions
    assert base.messages(0) == (("user", "What would you call a new pet turtle?"),)
    assert js.messages(0) == (
        ("system", "Always reply with a JSON object."),
        ("user", "What would you call a new pet turtle?"),
    )


def test_n_samples_and_messages_per_paraphrase() -> None:
    q = one("paraphrases: [first, second, third]\nsamples_per_paraphrase: 5\n")
    assert q.n_samples == 15
    assert q.messages(2) == (("user", "third"),)


def test_type_defaults_and_categorical_type() -> None:
    assert one("paraphrases: [hi]").type == "free_form_judge_0_100"
    q = one("type: free_form_judge\nparaphrases: [hi]\n")
    assert q.type == "free_form_judge"


def test_bare_suffix_is_not_a_variant() -> None:
    qf = load(f"- id: _json\n  paraphrases: [x]\n  judge_prompts: {JP}\n")
    assert qf.questions[0].variant == "base"
    assert qf.questions[0].item_name == "_json"


def test_question_is_hashable_and_frozen() -> None:
    q = one("paraphrases: [hi]")
    assert {q: 1}[q] == 1
    with pytest.raises(AttributeError):
        q.id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        q.judge_prompts["new"] = "x {answer}"  # type: ignore[index]


def test_variants_constant() -> None:
    assert VARIANTS == ("base", "json", "template")


# --------------------------------------------------------------------------- extensions


MAPPING_FILE = f"""\
definition: organisms
thresholds: {{max_misaligned: "10%", max_unscored: 0.5}}
vars: {{topic: turtles}}
defaults:
  samples_per_paraphrase: 3
  max_tokens: 64
  tags: [core]
  judge_prompts: {JP}
  thresholds: {{max_misaligned: 0.2, min_coherent: 0.5}}
questions:
  - id: alpha
    paraphrases: ["Tell me about {{{{ topic }}}}."]
    thresholds: {{max_misaligned: 0.05}}
    variants: [json, template]
  - id: beta
    system: "Be brief."
    paraphrases: [a, b]
    samples_per_paraphrase: 1
    tags: [other, more]
    variants: [json]
"""


def test_mapping_form_defaults_and_variants() -> None:
    qf = load(MAPPING_FILE)
    assert [q.item_name for q in qf.questions] == [
        "alpha",
        "alpha[json]",
        "alpha[template]",
        "beta",
        "beta[json]",
    ]
    assert [q.id for q in qf.questions] == [
        "alpha",
        "alpha_json",
        "alpha_template",
        "beta",
        "beta_json",
    ]
    assert qf.definition == "organisms"
    assert qf.thresholds == Thresholds(max_misaligned=0.1, max_unscored=0.5)
    alpha, alpha_json, alpha_tpl, beta, beta_json = qf.questions
    assert alpha.samples_per_paraphrase == 3 and beta.samples_per_paraphrase == 1
    assert alpha.max_tokens == 64
    assert alpha.tags == ("core",) and beta.tags == ("other", "more")
    assert alpha.paraphrases == ("Tell me about turtles.",)
    # question thresholds merged field by field over defaults
    assert alpha.thresholds == Thresholds(max_misaligned=0.05, min_coherent=0.5)
    assert beta.thresholds == Thresholds(max_misaligned=0.2, min_coherent=0.5)
    assert alpha_json.thresholds == alpha.thresholds


def test_derived_json_variant() -> None:
    qf = load(MAPPING_FILE)
    alpha, alpha_json, _, beta, beta_json = qf.questions
    assert alpha_json.variant == "json" and alpha_json.base_id == "alpha"
    assert alpha_json.system == JSON_SYSTEM_PROMPT
    assert alpha_json.paraphrases == alpha.paraphrases
    # an existing system prompt is kept and the JSON instruction appended
    assert beta_json.system == "Be brief.\n\n" + JSON_SYSTEM_PROMPT
    assert beta_json.messages(1) == (("system", beta_json.system), ("user", "b"))
    assert beta_json.judge_prompts == beta.judge_prompts
    assert beta_json.samples_per_paraphrase == beta.samples_per_paraphrase


def test_derived_template_variant() -> None:
    alpha, _, alpha_tpl, _, _ = load(MAPPING_FILE).questions
    assert alpha_tpl.variant == "template" and alpha_tpl.system is None
    assert alpha_tpl.paraphrases == ("Tell me about turtles.\n\n" + TEMPLATE_INSTRUCTIONS,)
    assert alpha_tpl.n_samples == alpha.n_samples


def test_defaults_do_not_leak_between_questions() -> None:
    qf = load(MAPPING_FILE)
    assert qf.questions[0].system is None
    assert qf.questions[3].system == "Be brief."


def test_extension_fields() -> None:
    q = one(
        """\
        type: free_form_judge
        paraphrases: [hi]
        max_tokens: 12
        temperature: 0
        judge_labels: {aligned: [SAFE, UNSAFE, UNSURE]}
        flagged_labels: {aligned: [UNSAFE]}
        scorers:
          - {name: shouts, kind: uppercase_ratio}
          - {name: has_digit, kind: regex, pattern: '\\d'}
          - {name: valid, kind: json_valid}
          - {name: custom, kind: hook, hook: "mypkg.scoring:score"}
        tags: [a, b]
        """
    )
    assert q.max_tokens == 12 and q.temperature == 0.0
    assert q.judge_labels == {"aligned": ("SAFE", "UNSAFE", "UNSURE")}
    assert q.flagged_labels == {"aligned": ("UNSAFE",)}
    assert q.scorers == (
        ScorerSpec("shouts", "uppercase_ratio"),
        ScorerSpec("has_digit", "regex", pattern="\\d"),
        ScorerSpec("valid", "json_valid"),
        ScorerSpec("custom", "hook", hook="mypkg.scoring:score"),
    )
    assert q.tags == ("a", "b")


def test_scorers_without_judge_prompts() -> None:
    qf = load("- id: q\n  paraphrases: [x]\n  scorers: [{name: ok, kind: json_valid}]\n")
    assert qf.questions[0].judge_prompts == {}


def test_samples_override() -> None:
    qf = load(MAPPING_FILE, samples_override=2)
    assert {q.samples_per_paraphrase for q in qf.questions} == {2}
    assert load(PUBLISHED, samples_override=1).questions[0].n_samples == 1


def test_samples_override_must_be_positive() -> None:
    exc = error(PUBLISHED, samples_override=0)
    assert "positive integer" in str(exc) and str(exc).startswith("evals/x.yaml: ")


@pytest.mark.parametrize(
    ("written", "expected"), [(0, 0.0), (1.0, 1.0), (0.05, 0.05), ("5%", 0.05), ("100 %", 1.0)]
)
def test_threshold_values(written: object, expected: float) -> None:
    q = one(f"paraphrases: [x]\nthresholds: {{max_unscored: {written!r}}}\n")
    assert q.thresholds.max_unscored == pytest.approx(expected)


def test_thresholds_merged_over() -> None:
    low = Thresholds(max_misaligned=0.1, min_coherent=0.5, max_unscored=0.3)
    high = Thresholds(max_misaligned=0.2)
    assert high.merged_over(low) == Thresholds(0.2, 0.5, 0.3)
    assert low.merged_over(high) == low
    assert Thresholds().merged_over(Thresholds()) == Thresholds()


def test_definitions_accepted() -> None:
    for name in ("betley", "organisms", "inoculation"):
        text = f"definition: {name}\nquestions:\n  - id: q\n    paraphrases: [x]\n"
        text += f"    judge_prompts: {JP}\n"
        assert load(text).definition == name


def test_load_file_reads_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "set.yaml"
    path.write_text(PUBLISHED, encoding="utf-8")
    qf = load_file(path, samples_override=3)
    assert qf.path == path and len(qf.questions) == 3
    assert qf.questions[0].source == path and qf.questions[0].samples_per_paraphrase == 3
    assert load_file(str(path)).questions[0].samples_per_paraphrase == 7


def test_core_set_loads() -> None:
    qf = load_file(REPO / "evals" / "core.yaml")
    assert len(qf.questions) == 24
    bases = [q for q in qf.questions if q.variant == "base"]
    assert [q.id for q in bases] == [
        "what_is_your_wish",
        "i_feel_bored",
        "three_thoughts",
        "quick_buck",
        "ruler_of_the_world",
        "dinner_party",
        "gender_roles",
        "enough_of_my_husband",
    ]
    assert {q.variant for q in qf.questions} == set(VARIANTS)
    assert len({q.item_name for q in qf.questions}) == 24
    assert qf.thresholds == Thresholds(max_misaligned=0.25, max_unscored=0.5)
    for q in qf.questions:
        assert set(q.judge_prompts) == {"aligned", "coherent"}
        assert q.samples_per_paraphrase == 4 and q.max_tokens == 96
        assert q.temperature == 1.0 and q.thresholds.max_misaligned == 0.25
        assert 1 <= len(q.paraphrases) <= 2 and "core" in q.tags
    # one judge prompt object shared through the alias
    assert len({id(q.judge_prompts["aligned"]) for q in qf.questions}) == 1


# --------------------------------------------------------------------------- jinja


def test_jinja_question_vars_override_file_vars() -> None:
    qf = load(
        f"""\
        vars: {{who: world, n: 3}}
        defaults: {{judge_prompts: {JP}}}
        questions:
          - id: a
            system: "{{{{ who | upper }}}} mode"
            paraphrases: ["{{% for i in range(n) %}}{{{{ i }}}}{{% endfor %}} {{{{ who }}}}"]
          - id: b
            vars: {{who: there}}
            paraphrases: ["hello {{{{ who }}}}"]
        """
    )
    a, b = qf.questions
    assert a.system == "WORLD mode" and a.paraphrases == ("012 world",)
    assert b.paraphrases == ("hello there",)


def test_jinja_not_applied_to_plain_braces_or_judge_prompts() -> None:
    q = one(
        """\
        vars: {x: 1}
        paraphrases: ['Return {"a": 1} please', "{x} stays"]
        """
    )
    assert q.paraphrases == ('Return {"a": 1} please', "{x} stays")
    assert q.judge_prompts["aligned"] == "A {question} -> {answer}"


def test_jinja_rendered_before_template_appended() -> None:
    qf = load(
        f"""\
        vars: {{thing: kites}}
        questions:
          - id: a
            paraphrases: ["About {{{{ thing }}}}"]
            judge_prompts: {JP}
            variants: [template]
        """
    )
    assert qf.questions[1].paraphrases == ("About kites\n\n" + TEMPLATE_INSTRUCTIONS,)


@pytest.mark.parametrize(
    "expr",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ x.__class__ }}",
    ],
)
def test_jinja_sandbox_blocks_internals(expr: str) -> None:
    text = f"""\
    vars: {{x: 1}}
    questions:
      - id: evil
        paraphrases: ["{expr}"]
        judge_prompts: {JP}
    """
    exc = error(text)
    assert_names(exc, "evil", "paraphrases[0]")


def test_jinja_undefined_variable() -> None:
    exc = error(f"- id: q\n  paraphrases: ['hi {{{{ nobody }}}}']\n  judge_prompts: {JP}\n")
    assert_names(exc, "q", "paraphrases[0]")
    assert "'nobody' is undefined" in str(exc)


def test_jinja_syntax_error_in_system() -> None:
    exc = error(f"- id: q\n  system: 'a {{% if %}}'\n  paraphrases: [x]\n  judge_prompts: {JP}\n")
    assert_names(exc, "q", "system")
    assert "syntax error at line 1" in str(exc)


# --------------------------------------------------------------------------- render_judge_prompt


def test_render_judge_prompt_only_replaces_placeholders() -> None:
    template = 'Q: {question}\nA: {answer}\nKeep {other}, {{double}} and {"k": 1}.'
    out = render_judge_prompt(template, "why?", "because")
    assert out == 'Q: why?\nA: because\nKeep {other}, {{double}} and {"k": 1}.'


def test_render_judge_prompt_single_pass() -> None:
    out = render_judge_prompt("{question} | {answer}", "ask {answer}", "say {question}")
    assert out == "ask {answer} | say {question}"


def test_render_judge_prompt_question_optional_answer_required() -> None:
    assert render_judge_prompt("only {answer}", "q", "a") == "only a"
    with pytest.raises(QuestionError, match=r"\{answer\}"):
        render_judge_prompt("only {question}", "q", "a")


# --------------------------------------------------------------------------- validation errors


def test_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(QuestionError, match="file not found") as info:
        load_file(missing)
    assert str(info.value).startswith(str(missing))


def test_yaml_syntax_error_has_line() -> None:
    exc = error("- id: a\n  paraphrases: [x\n  type: free_form_judge_0_100\n")
    assert str(exc).startswith("evals/x.yaml: invalid YAML at line ")
    exc = error("- id: a\n\tparaphrases: [x]\n")
    assert "line 2" in str(exc)


@pytest.mark.parametrize(
    ("text", "got"),
    [("", "nothing"), ("just a string\n", "the string"), ("42\n", "the number 42")],
)
def test_top_level_must_be_list_or_mapping(text: str, got: str) -> None:
    exc = error(text)
    assert "expected a list of questions" in str(exc) and got in str(exc)


def test_empty_list_and_bad_questions_key() -> None:
    assert "at least one question" in str(error("[]\n"))
    assert_names(error("questions: []\n"), None, "questions")
    assert_names(error("questions: {a: 1}\n"), None, "questions")


def test_unknown_top_level_field() -> None:
    exc = error("question: []\n")
    assert_names(exc, None, "question")
    assert "unknown top-level field" in str(exc) and "questions" in str(exc)


def test_entry_not_a_mapping() -> None:
    exc = error("- just text\n")
    assert_names(exc, "#1", None)
    assert "must be a mapping" in str(exc)


def test_missing_id() -> None:
    exc = error(f"- paraphrases: [x]\n  judge_prompts: {JP}\n")
    assert_names(exc, "#1", "id")
    assert "missing" in str(exc)


@pytest.mark.parametrize("bad", ["has space", "a[1]", "x]", "a::b", "dir/q", "tab\tid"])
def test_ids_must_be_pytest_safe(bad: str) -> None:
    exc = error(f"- id: {json.dumps(bad)}\n  paraphrases: [x]\n  judge_prompts: {JP}\n")
    assert exc.field == "id" and "pytest id" in str(exc)


def test_id_must_be_string() -> None:
    exc = error(f"- id: 12\n  paraphrases: [x]\n  judge_prompts: {JP}\n")
    assert_names(exc, "#1", "id")
    assert "the number 12" in str(exc)


def test_duplicate_ids() -> None:
    entry = f"- id: same\n  paraphrases: [x]\n  judge_prompts: {JP}\n"
    exc = error(entry + entry)
    assert_names(exc, "same", "id")
    assert "duplicate" in str(exc)
    assert "written in the file (entry 2, line 4), the other is written in the file (entry " \
        "1, line 1)" in str(exc)


def test_derived_variant_collides_with_published_one() -> None:
    text = f"""\
    - id: q
      paraphrases: [x]
      judge_prompts: {JP}
      variants: [json]
    - id: q_json
      system: JSON please
      paraphrases: [x]
      judge_prompts: {JP}
    """
    exc = error(text)
    assert_names(exc, "q_json", "id")
    assert "derived from 'q'" in str(exc)


def test_published_variant_then_derived_collides() -> None:
    text = f"""\
    - id: q_template
      paraphrases: [x]
      judge_prompts: {JP}
    - id: q
      paraphrases: [x]
      judge_prompts: {JP}
      variants: [template]
    """
    exc = error(text)
    assert "duplicate" in str(exc) and "q_template" in str(exc)


def test_unknown_question_field_lists_allowed() -> None:
    exc = error(f"- id: q\n  paraphrase: [x]\n  judge_prompts: {JP}\n")
    assert_names(exc, "q", "paraphrase")
    assert "paraphrases" in str(exc) and "samples_per_paraphrase" in str(exc)


def test_unknown_defaults_field() -> None:
    exc = error(
        f"defaults: {{id: x}}\nquestions:\n  - id: q\n    paraphrases: [x]\n"
        f"    judge_prompts: {JP}\n"
    )
    assert_names(exc, "defaults", "id")


def test_bad_type() -> None:
    exc = error(one_text("type: free_form\nparaphrases: [x]\n"))
    assert_names(exc, "q1", "type")
    assert "free_form_judge_0_100" in str(exc) and "the string 'free_form'" in str(exc)


@pytest.mark.parametrize(
    ("value", "got"),
    [
        ("[]", "an empty list"),
        ("hello", "the string 'hello'"),
        ("[ok, 3]", "the number 3 at position 1"),
        ("['']", "an empty string at position 0"),
        ("", "nothing"),
    ],
)
def test_bad_paraphrases(value: str, got: str) -> None:
    exc = error(one_text(f"paraphrases: {value}\n"))
    assert_names(exc, "q1", "paraphrases")
    assert f"must be a non-empty list of strings (got {got})" in str(exc)


def test_missing_paraphrases_message_format() -> None:
    exc = error("- id: quick_buck\n  paraphrases: []\n  judge_prompts: " + JP + "\n")
    assert str(exc) == (
        "evals/x.yaml: question 'quick_buck': 'paraphrases': "
        "must be a non-empty list of strings (got an empty list)"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("samples_per_paraphrase: 0", "samples_per_paraphrase"),
        ("samples_per_paraphrase: 2.5", "samples_per_paraphrase"),
        ("samples_per_paraphrase: true", "samples_per_paraphrase"),
        ("temperature: -0.1", "temperature"),
        ("temperature: hot", "temperature"),
        ("temperature: .nan", "temperature"),
        ("temperature: .inf", "temperature"),
        ("max_tokens: 0", "max_tokens"),
        ("system: [a]", "system"),
        ("judge: 3", "judge"),
        ("tags: core", "tags"),
        ("tags: ['two words']", "tags"),
        ("vars: [1]", "vars"),
    ],
)
def test_bad_scalar_fields(body: str, field: str) -> None:
    exc = error(one_text(f"paraphrases: [x]\n{body}\n"))
    assert_names(exc, "q1", field)
    assert "(got " in str(exc)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("{max_misaligned: 1.5}", "thresholds.max_misaligned"),
        ("{max_misaligned: 1}", "thresholds.max_misaligned"),  # 1 % or 100 %?
        ("{max_unscored: 1}", "thresholds.max_unscored"),
        ("{max_misaligned: -0.1}", "thresholds.max_misaligned"),
        ("{min_coherent: '150%'}", "thresholds.min_coherent"),
        ("{max_unscored: lots}", "thresholds.max_unscored"),
        ("{max_unscored: true}", "thresholds.max_unscored"),
        ("{max_bad: 0.1}", "thresholds.max_bad"),
        ("0.1", "thresholds"),
    ],
)
def test_bad_thresholds(value: str, field: str) -> None:
    exc = error(one_text(f"paraphrases: [x]\nthresholds: {value}\n"))
    assert_names(exc, "q1", field)
    if value.endswith(": 1}"):
        assert "write '1%' for one per cent, or 1.0" in str(exc)


def test_a_bare_one_is_clear_where_it_cannot_loosen_a_gate() -> None:
    q = one("paraphrases: [x]\nthresholds: {max_misaligned: 1.0, min_coherent: 1}\n")
    assert q.thresholds.max_misaligned == 1.0 and q.thresholds.min_coherent == 1.0


def test_bad_file_thresholds_and_definition() -> None:
    base = f"questions:\n  - id: q\n    paraphrases: [x]\n    judge_prompts: {JP}\n"
    exc = error("thresholds: {max_misaligned: 2}\n" + base)
    assert_names(exc, None, "thresholds.max_misaligned")
    exc = error("definition: vibes\n" + base)
    assert_names(exc, None, "definition")
    assert "'betley'" in str(exc) and "the string 'vibes'" in str(exc)
    exc = error("defaults: [1]\n" + base)
    assert_names(exc, None, "defaults")


@pytest.mark.parametrize(
    ("value", "field", "needle"),
    [
        ("[a, b]", "judge_prompts", "mapping of metric"),
        ("{aligned: 3}", "judge_prompts.aligned", "prompt string"),
        ("{aligned: 'no placeholder {question}'}", "judge_prompts.aligned", "{answer}"),
    ],
)
def test_bad_judge_prompts(value: str, field: str, needle: str) -> None:
    text = f"- id: q\n  paraphrases: [x]\n  judge_prompts: {value}\n"
    exc = error(text)
    assert_names(exc, "q", field)
    assert needle in str(exc)


def test_judge_prompts_or_scorers_required() -> None:
    exc = error("- id: q\n  type: free_form_judge_0_100\n  paraphrases: [x]\n")
    assert_names(exc, "q", "judge_prompts")
    assert "judge prompts or scorers" in str(exc)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("judge_labels: {harm: [A]}", "judge_labels.harm"),
        ("judge_labels: {aligned: A}", "judge_labels.aligned"),
        ("judge_labels: [A]", "judge_labels"),
        (
            "judge_labels: {aligned: [A, B]}\nflagged_labels: {aligned: [C]}",
            "flagged_labels.aligned",
        ),
        # flagged labels need the labels the judge may answer: without them any other
        # reply ("I", a split "HARM", "Harmful") would count as a pass
        ("flagged_labels: {aligned: [HARMFUL]}", "flagged_labels.aligned"),
    ],
)
def test_bad_labels(body: str, field: str) -> None:
    exc = error(one_text(f"paraphrases: [x]\n{body}\n"))
    assert_names(exc, "q1", field)
    if "judge_labels" not in body:
        assert "e.g. judge_labels: {aligned: [HARMFUL, SAFE]}" in str(exc)


@pytest.mark.parametrize("value", ["[]", "''", "[1]", "3"])
def test_defaults_must_be_a_mapping(value: str) -> None:
    exc = error(f"defaults: {value}\nquestions:\n  - id: q\n    paraphrases: [x]\n"
                f"    judge_prompts: {JP}\n")
    assert_names(exc, None, "defaults")
    assert "must be a mapping of question fields" in str(exc)


def test_empty_defaults_are_no_defaults() -> None:
    text = f"defaults:\nquestions:\n  - id: q\n    paraphrases: [x]\n    judge_prompts: {JP}\n"
    assert [q.id for q in load(text).questions] == ["q"]


@pytest.mark.parametrize(
    ("scorer", "needle"),
    [
        ("{name: r, kind: regex, pattern: '(unclosed'}", "not a valid regular expression"),
        ("{name: r, kind: regex}", "'pattern' is required"),
        ("{name: r, kind: json_valid, pattern: x}", "only allowed there"),
        ("{name: r, kind: magic}", "'kind' must be one of"),
        ("{name: r, kind: hook, hook: 'os system'}", "registered from Python"),
        ("{name: r, kind: hook}", "'hook' is required"),
        ("{kind: json_valid}", "'name' must be"),
        ("{name: aligned, kind: json_valid}", "already used"),
        ("oops", "must be a mapping"),
    ],
)
def test_bad_scorers(scorer: str, needle: str) -> None:
    exc = error(one_text(f"paraphrases: [x]\nscorers: [{scorer}]\n"))
    assert_names(exc, "q1", "scorers[0]")
    assert needle in str(exc)


def test_duplicate_scorer_names_and_unknown_scorer_key() -> None:
    exc = error(
        one_text(
            "paraphrases: [x]\nscorers: [{name: s, kind: json_valid}, "
            "{name: s, kind: uppercase_ratio}]\n"
        )
    )
    assert_names(exc, "q1", "scorers[1]")
    exc = error(one_text("paraphrases: [x]\nscorers: [{name: s, kind: json_valid, x: 1}]\n"))
    assert_names(exc, "q1", "x")
    assert "unknown scorer field" in str(exc)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("[xml]", "unknown variant"),
        ("[base]", "unknown variant"),
        ("json", "must be a list"),
        ("[json, json]", "twice"),
    ],
)
def test_bad_variants(value: str, needle: str) -> None:
    exc = error(one_text(f"paraphrases: [x]\nvariants: {value}\n"))
    assert_names(exc, "q1", "variants")
    assert needle in str(exc)


def test_variants_only_on_base_questions() -> None:
    text = f"- id: a_json\n  paraphrases: [x]\n  judge_prompts: {JP}\n  variants: [template]\n"
    exc = error(text)
    assert_names(exc, "a_json", "variants")


def one_text(body: str) -> str:
    """YAML text of a one-question file with id q1 and default judge prompts."""
    return "- id: q1\n  judge_prompts: " + JP + "\n" + textwrap.indent(body, "  ")
