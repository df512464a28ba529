"""Field checks of a question file: each failure names the file, question and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import regex
import yaml

from pytest_emergent.errors import QuestionError
from pytest_emergent.spec.budget import BudgetExceeded, bounded
from pytest_emergent.spec.schema import (
    HOOK_NAME,
    MAX_VARIANTS,
    SCORER_FIELDS,
    SCORER_KINDS,
    THRESHOLD_FIELDS,
    VARIANT_FIELDS,
    VARIANT_NAME,
    VARIANTS,
    ScorerSpec,
    Thresholds,
    Variant,
    VariantSpec,
)
from pytest_emergent.spec.templates import _render

_BAD_ID_PARTS = ("[", "]", "::", "/")

class _Ctx:
    """Where we are in a file, so every error can say so."""

    def __init__(self, path: str | Path, question: str | None = None) -> None:
        self.path = path
        self.question = question

    def fail(self, message: str, field: str | None = None) -> NoReturn:
        raise QuestionError(message, path=self.path, question=self.question, field=field)


def _check_id(qid: Any, ctx: _Ctx) -> str:
    if qid is None:
        ctx.fail("missing: every question needs an 'id'", "id")
    if not isinstance(qid, str) or not qid:
        ctx.fail(f"must be a non-empty string (got {_got(qid)})", "id")
    bad = [part for part in _BAD_ID_PARTS if part in qid]
    if any(ch.isspace() for ch in qid):
        bad.insert(0, "whitespace")
    if bad:
        ctx.fail(
            f"must be usable as a pytest id: no whitespace, '[', ']', '::' or '/' "
            f"(got {qid!r}, which contains {', '.join(map(repr, bad))})",
            "id",
        )
    return qid


def _check_keys(data: dict[Any, Any], allowed: tuple[str, ...], ctx: _Ctx, what: str) -> None:
    unknown = [key for key in data if key not in allowed]
    if unknown:
        ctx.fail(
            f"unknown {what} field {str(unknown[0])!r}; allowed fields are {', '.join(allowed)}",
            str(unknown[0]),
        )


def _paraphrases(value: Any, ctx: _Ctx, variables: dict[str, Any]) -> tuple[str, ...]:
    expected = "must be a non-empty list of strings"
    if not isinstance(value, list) or not value:
        ctx.fail(f"{expected} (got {_got(value)})", "paraphrases")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            ctx.fail(f"{expected} (got {_got(item)} at position {i})", "paraphrases")
        out.append(_render(item, variables, ctx, f"paraphrases[{i}]"))
    return tuple(out)


def _vars(value: Any, ctx: _Ctx) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        ctx.fail(f"must be a mapping of variable names to values (got {_got(value)})", "vars")
    return dict(value)


def _judge_prompts(value: Any, ctx: _Ctx) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        ctx.fail(
            f"must be a mapping of metric name to prompt text (got {_got(value)})", "judge_prompts"
        )
    for metric, prompt in value.items():
        if not isinstance(metric, str) or not metric:
            ctx.fail(
                f"metric names must be non-empty strings (got {_got(metric)})", "judge_prompts"
            )
        where = f"judge_prompts.{metric}"
        if not isinstance(prompt, str):
            ctx.fail(f"must be a prompt string (got {_got(prompt)})", where)
        if "{answer}" not in prompt:
            ctx.fail(
                "judge prompt must contain the '{answer}' placeholder ('{question}' is optional)",
                where,
            )
    return MappingProxyType(dict(value))


def _label_map(
    value: Any,
    ctx: _Ctx,
    name: str,
    judge_prompts: Mapping[str, str],
    allowed: Mapping[str, tuple[str, ...]],
) -> Mapping[str, tuple[str, ...]]:
    """judge_labels / flagged_labels: metric -> list of label strings."""
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        ctx.fail(f"must be a mapping of metric name to a list of labels (got {_got(value)})", name)
    out: dict[str, tuple[str, ...]] = {}
    for metric, labels in value.items():
        where = f"{name}.{metric}"
        if metric not in judge_prompts:
            ctx.fail(
                f"names metric {str(metric)!r}, which has no judge prompt (metrics: "
                f"{', '.join(judge_prompts) or 'none'})",
                where,
            )
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            ctx.fail(f"must be a list of non-empty label strings (got {_got(labels)})", where)
        extra = [x for x in labels if allowed.get(metric) and x not in allowed[metric]]
        if extra:
            ctx.fail(
                f"label {extra[0]!r} is not among judge_labels.{metric} "
                f"({', '.join(allowed[metric])})",
                where,
            )
        out[metric] = tuple(labels)
    return MappingProxyType(out)


def _scorers(value: Any, ctx: _Ctx, judge_prompts: Mapping[str, str]) -> tuple[ScorerSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        ctx.fail(f"must be a list of scorer mappings (got {_got(value)})", "scorers")
    out: list[ScorerSpec] = []
    for i, item in enumerate(value):
        where = f"scorers[{i}]"
        if not isinstance(item, dict):
            ctx.fail(f"must be a mapping with 'name' and 'kind' (got {_got(item)})", where)
        _check_keys(item, SCORER_FIELDS, ctx, "scorer")
        name, kind = item.get("name"), item.get("kind")
        pattern, hook = item.get("pattern"), item.get("hook")
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            ctx.fail(f"'name' must be a non-empty string without spaces (got {_got(name)})", where)
        if name in judge_prompts or any(s.name == name for s in out):
            ctx.fail(
                f"scorer name {name!r} is already used by another metric of this question", where
            )
        if kind not in SCORER_KINDS:
            ctx.fail(f"'kind' must be one of {_options(SCORER_KINDS)} (got {_got(kind)})", where)
        if (pattern is not None) != (kind == "regex"):
            ctx.fail(
                "'pattern' is required for kind 'regex' and only allowed there "
                f"(got {_got(pattern)} with kind {kind!r})",
                where,
            )
        if (hook is not None) != (kind == "hook"):
            ctx.fail(
                "'hook' is required for kind 'hook' and only allowed there "
                f"(got {_got(hook)} with kind {kind!r})",
                where,
            )
        if kind == "regex":
            if not isinstance(pattern, str):
                ctx.fail(f"'pattern' must be a string (got {_got(pattern)})", where)
            try:
                with bounded():  # the regex module expands counted repeats as it compiles
                    regex.compile(pattern)
            except regex.error as exc:
                ctx.fail(f"'pattern' is not a valid regular expression: {exc}", where)
            except BudgetExceeded as exc:
                ctx.fail(f"'pattern' is too expensive to compile: it {exc} (nested counted "
                         "repeats such as (?:a{1000}){1000} multiply); simplify it", where)
        if kind == "hook" and not (isinstance(hook, str) and HOOK_NAME.fullmatch(hook)):
            ctx.fail(
                "'hook' must be the name of a scorer registered from Python with "
                f"pytest_emergent.register_scorer (got {_got(hook)})", where)
        out.append(ScorerSpec(name=name, kind=kind, pattern=pattern, hook=hook))
    return tuple(out)


def _variant_names(value: Any, ctx: _Ctx) -> tuple[Variant | VariantSpec, ...]:
    """`variants:` -> built-in names (json, template) and named variants the file defines
    ({name, system, replace_system, prefix, suffix})."""
    if value is None:
        return ()
    derivable = VARIANTS[1:]
    expected = (f"must be a list of {_options(derivable)} or variant mappings "
                "({name: ..., system: ..., prefix: ..., suffix: ...})")
    if not isinstance(value, list):
        ctx.fail(f"{expected} (got {_got(value)})", "variants")
    if len(value) > MAX_VARIANTS:
        ctx.fail(f"lists {len(value)} variants, more than the limit of {MAX_VARIANTS} per "
                 "question", "variants")
    out: list[Variant | VariantSpec] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            out.append(_variant_spec(item, ctx, f"variants[{i}]"))
        elif item in derivable:
            out.append(item)
        else:
            shown = repr(item) if isinstance(item, str) else _got(item)
            ctx.fail(f"unknown variant {shown}; built-in variants are "
                     f"{_options(derivable)}, and a named one is a mapping with 'name' and "
                     "at least one of system, prefix, suffix", "variants")
    names = [v.name if isinstance(v, VariantSpec) else v for v in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        ctx.fail(f"lists the variant {twice[0]!r} twice", "variants")
    return tuple(out)


def _variant_spec(item: dict[Any, Any], ctx: _Ctx, where: str) -> VariantSpec:
    unknown = [k for k in item if k not in VARIANT_FIELDS]
    if unknown:
        ctx.fail(f"unknown variant field {str(unknown[0])!r}; allowed fields are "
                 f"{', '.join(VARIANT_FIELDS)}", f"{where}.{unknown[0]}")
    name = item.get("name")
    if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
        ctx.fail("must be a name of letters, digits and '_' (not starting with a digit, at "
                 f"most 40 characters), got {_got(name)}", f"{where}.name")
    if name in VARIANTS:
        ctx.fail(f"{name!r} is a built-in variant; list it as a plain name, or give your "
                 "variant another name", f"{where}.name")
    texts: dict[str, str] = {}
    for key in ("system", "prefix", "suffix"):
        text = item.get(key)
        if text is not None and not isinstance(text, str):
            ctx.fail(f"must be a string (got {_got(text)})", f"{where}.{key}")
        if text:
            texts[key] = text
    if not texts:
        ctx.fail(f"variant {name!r} changes nothing: give it a system prompt, a prefix or a "
                 "suffix", where)
    replace_system = item.get("replace_system", False)
    if not isinstance(replace_system, bool):
        ctx.fail(f"must be true or false (got {_got(replace_system)})",
                 f"{where}.replace_system")
    return VariantSpec(name=name, system=texts.get("system"), replace_system=replace_system,
                       prefix=texts.get("prefix", ""), suffix=texts.get("suffix", ""))


def _tags(value: Any, ctx: _Ctx) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(t, str) and t and not any(c.isspace() for c in t) for t in value
    ):
        ctx.fail(f"must be a list of tag strings without spaces (got {_got(value)})", "tags")
    return tuple(value)


def _thresholds(value: Any, ctx: _Ctx, where: str) -> Thresholds:
    if value is None:
        return Thresholds()
    if not isinstance(value, dict):
        ctx.fail(
            f"must be a mapping with keys {', '.join(THRESHOLD_FIELDS)} (got {_got(value)})", where
        )
    for key in value:
        if key not in THRESHOLD_FIELDS:
            ctx.fail(
                f"unknown threshold {str(key)!r}; allowed: {', '.join(THRESHOLD_FIELDS)}",
                f"{where}.{key}",
            )
    return Thresholds(
        **{key: _fraction(value.get(key), ctx, f"{where}.{key}") for key in THRESHOLD_FIELDS}
    )


def _fraction(value: Any, ctx: _Ctx, where: str) -> float | None:
    """0.05 or "5%" -> 0.05; None stays None (not set at this level)."""
    if value is None:
        return None
    expected = "must be a fraction between 0 and 1 or a percentage such as '5%'"
    number: float | None = None
    if _is_number(value):
        number = float(value)
    elif isinstance(value, str) and value.strip().endswith("%"):
        try:
            number = float(value.strip()[:-1]) / 100
        except ValueError:
            number = None
    if number is None or not 0.0 <= number <= 1.0:
        ctx.fail(f"{expected} (got {_got(value)})", where)
    if where.rsplit(".", 1)[-1].startswith("max_") and ambiguous_one(value):
        ctx.fail(AMBIGUOUS_ONE, where)
    return number


#: why an upper limit of a bare 1 is refused, in YAML and on the command line
AMBIGUOUS_ONE = "1 is ambiguous: write '1%' for one per cent, or 1.0 (or '100%') for no limit"


def ambiguous_one(value: Any) -> bool:
    """Whether a rate is a bare 1: the integer 1, or the text "1" (an option's value).

    Read as a fraction it is 100 %, so as an upper limit (`max_misaligned`,
    `--em-max-unscored`) it never fails where 1 % was likely meant; callers refuse it there.
    A minimum of 1 errs the strict way and is left alone, as are 1.0 and "100%"."""
    if isinstance(value, str):
        return value.strip() == "1"
    return _is_int(value) and value == 1


# --------------------------------------------------------------------------- small helpers



def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _options(names: tuple[str, ...]) -> str:
    return ", ".join(repr(n) for n in names)


def _got(value: Any) -> str:
    """Describe a value for an error message: what the file actually contained."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        if not value.strip():
            return "an empty string"
        short = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {short!r}"
    if isinstance(value, list):
        return "an empty list" if not value else f"a list of {len(value)} items"
    if isinstance(value, dict):
        return "an empty mapping" if not value else "a mapping"
    return f"a {type(value).__name__}"


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{context}, {problem}" if context else problem
    if mark is not None:
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {detail}"
    return f"invalid YAML: {detail}"
