"""pytest-emergent: test language models for emergent misalignment from pytest.

The names a user needs are importable from here (`from pytest_emergent import run_questions`);
each is loaded from its stage on first use, so importing this package stays light: torch,
transformers, peft, openai and inspect_ai are imported only by the backends that need them.
docs/architecture.md shows which stage each name comes from. (`finetune` itself is not
here: the name is its subpackage's; import it as `from pytest_emergent.finetune import
finetune`.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_emergent.errors import EmergentError
from pytest_emergent.judging.scorers import register_scorer, registered_scorers

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    # the plain Python API
    "load_model": "pytest_emergent.run.api",
    "load_questions": "pytest_emergent.run.api",
    "run_questions": "pytest_emergent.run.api",
    # questions
    "Question": "pytest_emergent.spec",
    "QuestionFile": "pytest_emergent.spec",
    "Thresholds": "pytest_emergent.spec",
    "load_file": "pytest_emergent.spec",
    # backends and judges
    "Backend": "pytest_emergent.models.base",
    "Judge": "pytest_emergent.judging.judge",
    "JudgeScore": "pytest_emergent.judging.judge",
    "JudgeTask": "pytest_emergent.judging.judge",
    # results and statistics
    "EvalOptions": "pytest_emergent.run.records",
    "QuestionResult": "pytest_emergent.run.records",
    "SampleRecord": "pytest_emergent.run.records",
    "Definition": "pytest_emergent.stats",
    "RateSummary": "pytest_emergent.stats",
    "as_summary": "pytest_emergent.stats",
    "assert_increases": "pytest_emergent.stats",
    "assert_reduces": "pytest_emergent.stats",
    "get_definition": "pytest_emergent.stats",
    # fine-tuning and mitigations
    "load_dataset": "pytest_emergent.finetune",
    "Direction": "pytest_emergent.mitigations",
    "SteeredBackend": "pytest_emergent.mitigations",
    "direction_from_examples": "pytest_emergent.mitigations",
    "direction_from_results": "pytest_emergent.mitigations",
}

__all__ = [
    "Backend",
    "Definition",
    "Direction",
    "EmergentError",
    "EvalOptions",
    "Judge",
    "JudgeScore",
    "JudgeTask",
    "Question",
    "QuestionFile",
    "QuestionResult",
    "RateSummary",
    "SampleRecord",
    "SteeredBackend",
    "Thresholds",
    "as_summary",
    "assert_increases",
    "assert_reduces",
    "direction_from_examples",
    "direction_from_results",
    "get_definition",
    "load_dataset",
    "load_file",
    "load_model",
    "load_questions",
    "register_scorer",
    "registered_scorers",
    "run_questions",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_emergent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # what type checkers and IDEs see; the runtime path is __getattr__
    from pytest_emergent.finetune import load_dataset
    from pytest_emergent.judging.judge import Judge, JudgeScore, JudgeTask
    from pytest_emergent.mitigations import (
        Direction,
        SteeredBackend,
        direction_from_examples,
        direction_from_results,
    )
    from pytest_emergent.models.base import Backend
    from pytest_emergent.run.api import load_model, load_questions, run_questions
    from pytest_emergent.run.records import EvalOptions, QuestionResult, SampleRecord
    from pytest_emergent.spec import Question, QuestionFile, Thresholds, load_file
    from pytest_emergent.stats import (
        Definition,
        RateSummary,
        as_summary,
        assert_increases,
        assert_reduces,
        get_definition,
    )
