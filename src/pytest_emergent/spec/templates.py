"""Templates: judge prompts' ``{question}`` / ``{answer}`` placeholders, and jinja2 in
question texts, rendered in a sandbox so a third-party file cannot reach Python internals.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from pytest_emergent.errors import QuestionError
from pytest_emergent.spec.budget import BudgetExceeded, bounded

if TYPE_CHECKING:
    from pytest_emergent.spec.validate import _Ctx

_PLACEHOLDER = re.compile(r"\{(question|answer)\}")

#: the most characters one rendered question text may have (a paraphrase or a system
#: prompt); rendering stops as soon as it passes this
MAX_RENDERED = 100_000
#: the most bits an integer power inside a template may produce
_MAX_POWER_BITS = 4096


class TemplateTooLarge(Exception):
    """A template asked for more than `MAX_RENDERED` characters (or a huge number)."""


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox, with string / list repetition and integer powers bounded, so a template
    cannot allocate gigabytes before the rendered size is checked."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (isinstance(seq, (str, list, tuple)) and isinstance(times, int)
                        and len(seq) * max(times, 0) > MAX_RENDERED):
                    raise TemplateTooLarge(
                        f"repeats a {type(seq).__name__} of length {len(seq)} {times} "
                        f"times, more than {MAX_RENDERED} in all")
        if (operator == "**" and isinstance(left, int) and isinstance(right, int)
                and right > 0 and abs(left) > 1
                and right * abs(left).bit_length() > _MAX_POWER_BITS):
            raise TemplateTooLarge(f"computes {left} ** {right}, a number too large")
        return super().call_binop(context, operator, left, right)


# One sandbox for every file: a question set from a third party must not be able to reach
# Python internals through a template, nor exhaust memory, and a missing variable must fail
# loudly.
_JINJA = _BoundedSandbox(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _bounded_render(template: jinja2.Template, variables: dict[str, Any]) -> str:
    """Render piece by piece and stop once the text passes `MAX_RENDERED` characters."""
    parts: list[str] = []
    size = 0
    for piece in template.generate(variables):
        size += len(piece)
        if size > MAX_RENDERED:
            raise TemplateTooLarge(f"renders to more than {MAX_RENDERED} characters")
        parts.append(piece)
    return "".join(parts)


def render_judge_prompt(template: str, question: str, answer: str) -> str:
    """Fill the ``{question}`` and ``{answer}`` placeholders of a judge prompt.

    Only those two exact placeholders are replaced, in one pass (so an answer that itself
    contains ``{question}`` is left alone); any other braces in the template are kept.
    """
    if "{answer}" not in template:
        raise QuestionError("judge prompt must contain the '{answer}' placeholder")
    values = {"question": question, "answer": answer}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _render(text: str, variables: dict[str, Any], ctx: _Ctx, where: str) -> str:
    """Render jinja2 only where the text uses it, so published braces stay untouched."""
    if len(text) > MAX_RENDERED:
        ctx.fail(f"is {len(text)} characters long, more than the limit of {MAX_RENDERED} "
                 "per question text", where)
    if "{{" not in text and "{%" not in text:
        return text
    try:
        with bounded():
            return _bounded_render(_JINJA.from_string(text), variables)
    except TemplateTooLarge as exc:
        ctx.fail(f"jinja2 template is too large: it {exc} (the limit is "
                 f"{MAX_RENDERED} characters per rendered text)", where)
    except BudgetExceeded as exc:
        ctx.fail(f"jinja2 template is too expensive to render: it {exc} (a loop, a recursive "
                 "macro or a filter that builds a long text); simplify it", where)
    except jinja2.TemplateSyntaxError as exc:
        ctx.fail(f"jinja2 syntax error at line {exc.lineno}: {exc.message}", where)
    except jinja2.exceptions.SecurityError as exc:
        ctx.fail(f"jinja2 template tried an unsafe operation, refused by the sandbox: {exc}", where)
    except jinja2.UndefinedError as exc:
        known = ", ".join(sorted(variables)) or "none"
        ctx.fail(
            f"jinja2 template uses an undefined variable: {exc.message} "
            f"(variables defined in 'vars': {known})",
            where,
        )
    except jinja2.TemplateError as exc:
        ctx.fail(f"jinja2 template failed to render: {exc}", where)
    except Exception as exc:  # a filter raising on bad input, e.g. int('x')
        ctx.fail(f"jinja2 template failed to render: {type(exc).__name__}: {exc}", where)


