"""Judge-free scorers, and the registry that keeps question files from running code.

A question file is data. It may ask for the built-in scorers (`regex`, `json_valid`,
`uppercase_ratio`) or *name* a `hook` scorer, but the name is only looked up in this
registry: Python code (a conftest.py, a plugin, the script calling the API) must have put a
function there with `register_scorer`. Nothing named in YAML is ever imported, so a
third-party file cannot reach `os:system` or any other importable callable.

    # conftest.py
    from pytest_emergent import register_scorer

    @register_scorer("mentions_money")
    def mentions_money(answer: str) -> float:
        return 1.0 if "$" in answer else 0.0

Every scorer value must be a finite number in 0..1; anything else is an error naming the
question and scorer, never a silently kept or dropped score.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pytest_emergent.errors import QuestionError
from pytest_emergent.spec.schema import HOOK_NAME

if TYPE_CHECKING:
    from pytest_emergent.spec import Question, ScorerSpec

ScorerFn = Callable[[str], float]

_REGISTRY: dict[str, ScorerFn] = {}

#: seconds a regex scorer may spend on one answer
REGEX_TIMEOUT = 1.0



def register_scorer(name: str, func: ScorerFn | None = None) -> Callable[..., ScorerFn]:
    """Register `func` under `name` for ``{kind: hook, hook: NAME}`` scorers in YAML.

    Use it as a call (``register_scorer("x", fn)``) or a decorator (``@register_scorer("x")``).
    Registering a name again replaces the function (a re-imported conftest does so).
    """
    if not isinstance(name, str) or not HOOK_NAME.fullmatch(name):
        raise ValueError(f"scorer name must match {HOOK_NAME.pattern} (got {name!r})")

    def add(fn: ScorerFn) -> ScorerFn:
        if not callable(fn):
            raise TypeError(f"register_scorer({name!r}): {fn!r} is not callable")
        _REGISTRY[name] = fn
        return fn

    if func is not None:
        add(func)
        return lambda fn: fn
    return add


def unregister_scorer(name: str) -> None:
    """Remove a registered scorer (tests use it to clean up)."""
    _REGISTRY.pop(name, None)


def registered_scorers() -> tuple[str, ...]:
    """The names YAML files may use as hooks, sorted."""
    return tuple(sorted(_REGISTRY))


def _unregistered(question: Question, spec: ScorerSpec) -> QuestionError:
    known = ", ".join(registered_scorers()) or "none registered"
    return QuestionError(
        f"hook scorer {spec.hook!r} is not registered ({known}). A question file can only "
        "name scorers that Python code registered; it never imports one. Register it in a "
        f"conftest.py: `from pytest_emergent import register_scorer; "
        f"register_scorer({spec.hook!r}, my_function)`",
        path=question.source, question=question.id, field=f"scorers.{spec.name}",
    )


def check_registered(questions: Sequence[Question]) -> None:
    """Raise for the first hook scorer of `questions` that nobody registered."""
    for question in questions:
        for spec in question.scorers:
            if spec.kind == "hook" and spec.hook not in _REGISTRY:
                raise _unregistered(question, spec)


def build(question: Question, spec: ScorerSpec) -> ScorerFn:
    """The function scoring answers for one scorer of one question, its values checked."""
    raw: ScorerFn
    if spec.kind == "regex":
        raw = _regex_scorer(question, spec)
    elif spec.kind == "json_valid":
        raw = json_valid
    elif spec.kind == "uppercase_ratio":
        raw = uppercase_ratio
    elif spec.kind == "hook":
        if spec.hook not in _REGISTRY:
            raise _unregistered(question, spec)
        raw = _REGISTRY[spec.hook]
    else:
        raise ValueError(f"unknown scorer kind {spec.kind!r}")

    def checked(text: str) -> float:
        value = raw(text)
        bad = isinstance(value, bool) or not isinstance(value, (int, float))
        if bad or not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise QuestionError(
                f"scorer returned {value!r}; a scorer must return a finite number in 0..1",
                path=question.source, question=question.id, field=f"scorers.{spec.name}",
            )
        return float(value)

    return checked


def _regex_scorer(question: Question, spec: ScorerSpec) -> ScorerFn:
    """1.0 when the pattern matches somewhere in the answer. Matched with the `regex` module
    and a time limit per answer: a pattern that backtracks catastrophically (``(a+)+$``)
    stops with an error naming the scorer instead of hanging the run."""
    import regex

    pattern = regex.compile(spec.pattern or "")

    def score(text: str) -> float:
        try:
            return 1.0 if pattern.search(text, timeout=REGEX_TIMEOUT) else 0.0
        except TimeoutError:
            raise QuestionError(
                f"pattern {spec.pattern!r} took more than {REGEX_TIMEOUT:g} s on one answer "
                f"({len(text)} characters): it backtracks without bound; rewrite it without "
                "nested repetition such as (a+)+",
                path=question.source, question=question.id, field=f"scorers.{spec.name}",
            ) from None

    return score


def json_valid(text: str) -> float:
    """1.0 when the answer (optionally in a ```json fence) parses as JSON, else 0.0."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`")
        body = body[4:] if body.startswith("json") else body
    try:
        json.loads(body)
    except (ValueError, RecursionError):  # nested past the parser's depth: 1,000 "[" did
        return 0.0
    return 1.0


def uppercase_ratio(text: str) -> float:
    """Share of letters that are capitals (0.0 for text without letters)."""
    letters = [c for c in text if c.isalpha()]
    return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
