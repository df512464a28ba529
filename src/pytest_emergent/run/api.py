"""The plain Python API: everything the fixtures do, usable outside pytest.

    from pytest_emergent import load_model, load_questions, run_questions
    model = load_model("smollm2-135m-instruct")
    results = run_questions(load_questions("evals/core.yaml"), model)
    print(results["quick_buck"].summary.rate)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pytest_emergent.judging.judge import Judge
from pytest_emergent.models.base import Backend
from pytest_emergent.run.evaluate import evaluate
from pytest_emergent.run.records import EvalOptions, QuestionResult
from pytest_emergent.spec import Question, QuestionFile, Thresholds, load_file
from pytest_emergent.stats import GatePolicy, get_definition


def load_model(spec: str, **kwargs: object) -> Backend:
    """Resolve a model spec (see docs/models.md) to a backend."""
    from pytest_emergent.models.registry import resolve

    return resolve(spec, **kwargs)  # type: ignore[arg-type]


def load_questions(path: str | Path, *, samples: int | None = None) -> QuestionFile:
    """Load and validate a question file."""
    return load_file(path, samples_override=samples)


def run_questions(
    questions: QuestionFile | Sequence[Question],
    model: Backend,
    judge: Backend | Judge | None = None,
    *,
    definition: str = "betley",
    seed: int = 0,
    confidence: float = 0.95,
    gate_policy: GatePolicy = "point",
    thresholds: Thresholds | None = None,
    judge_min_mass: float = 0.25,
) -> dict[str, QuestionResult]:
    """Sample, judge and gate; `judge` defaults to the model itself. Keyed by question id."""
    qs = list(questions.questions if isinstance(questions, QuestionFile) else questions)
    if not isinstance(judge, Judge):
        judge = Judge(judge if judge is not None else model, min_mass=judge_min_mass)
    options = EvalOptions(
        definition=get_definition(definition),
        seed=seed,
        confidence=confidence,
        gate_policy=gate_policy,
        override_thresholds=thresholds or Thresholds(),
    )
    results = evaluate(qs, model, judge, options)
    return {q_id: res for (_src, q_id), res in results.items()}
