"""Stage 1: question files (YAML) become validated, frozen `Question`s.

`schema` holds the vocabulary and the dataclasses, `load` reads files, `validate` checks
fields, `templates` renders judge prompts and jinja2 (sandboxed), `variants` derives the
json and template variants.
"""

from pytest_emergent.spec.load import load_file, load_text
from pytest_emergent.spec.schema import (
    CATEGORICAL_TYPE,
    DEFINITIONS,
    HOOK_NAME,
    JSON_SYSTEM_PROMPT,
    MAX_ANSWERS,
    NUMERIC_TYPE,
    QUESTION_TYPES,
    SCORER_KINDS,
    TEMPLATE_INSTRUCTIONS,
    VARIANTS,
    Messages,
    Question,
    QuestionFile,
    Role,
    ScorerSpec,
    Thresholds,
)
from pytest_emergent.spec.templates import render_judge_prompt

__all__ = [
    "DEFINITIONS",
    "HOOK_NAME",
    "JSON_SYSTEM_PROMPT",
    "CATEGORICAL_TYPE",
    "NUMERIC_TYPE",
    "MAX_ANSWERS",
    "QUESTION_TYPES",
    "SCORER_KINDS",
    "TEMPLATE_INSTRUCTIONS",
    "VARIANTS",
    "Messages",
    "Question",
    "QuestionFile",
    "Role",
    "ScorerSpec",
    "Thresholds",
    "load_file",
    "load_text",
    "render_judge_prompt",
]
