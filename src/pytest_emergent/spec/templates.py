"""Templates: judge prompts' ``{question}`` / ``{answer}`` placeholders, and jinja2 in
question texts, rendered in a sandbox so a third-party file cannot reach Python internals.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from pytest_emergent.errors import QuestionError

if TYPE_CHECKING:
    from pytest_emergent.spec.validate import _Ctx

_PLACEHOLDER = re.compile(r"\{(question|answer)\}")
# One sandbox for every file: a question set from a third party must not be able to reach
# Python internals through a template, and a missing variable must fail loudly.
_JINJA = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


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
    if "{{" not in text and "{%" not in text:
        return text
    try:
        return _JINJA.from_string(text).render(variables)
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


