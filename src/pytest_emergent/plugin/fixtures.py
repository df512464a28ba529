"""Thin fixtures over the library, registered by the plugin.

- `em_settings`: the validated `Settings` of the session.
- `em_model` / `em_judge_backend`: the session's backends for `--model` / `--judge`.
- `em_judge`: a `Judge` over the judge backend with the session's judge options.
- `em_questions`: load a question file (path relative to the test file's folder).
- `em_evaluate`: evaluate questions against a backend, returning `QuestionResult`s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_emergent.errors import EmergentError
from pytest_emergent.plugin.items import file_key, question_key, run_key
from pytest_emergent.plugin.options import Settings, settings_key
from pytest_emergent.plugin.sweep import model_key, sweep_key

if TYPE_CHECKING:
    from pytest_emergent.judging.judge import Judge
    from pytest_emergent.models.base import Backend
    from pytest_emergent.run.records import QuestionResult
    from pytest_emergent.run.session import FileResult
    from pytest_emergent.spec import Question


@pytest.fixture(scope="session")
def em_settings(pytestconfig: pytest.Config) -> Settings:
    """The session's validated settings (options, ini values and defaults)."""
    return pytestconfig.stash[settings_key]


@pytest.fixture(scope="session")
def em_model(pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    """The model under test (`--model`), loaded once per session."""
    return pytestconfig.stash[run_key].backends()[0]


@pytest.fixture(scope="session")
def em_judge_backend(pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    """The judge's backend (`--judge`), loaded once per session."""
    return pytestconfig.stash[run_key].backends()[1]


@pytest.fixture(scope="session")
def em_judge(pytestconfig: pytest.Config, em_judge_backend):  # type: ignore[no-untyped-def]
    """A `Judge` over the session's judge backend."""
    return pytestconfig.stash[run_key].make_judge(em_judge_backend)


@pytest.fixture
def em_questions(request: pytest.FixtureRequest, em_settings: Settings):  # type: ignore[no-untyped-def]
    """`em_questions("sets/x.yaml")` -> `QuestionFile`; relative to the test file's folder."""
    base = Path(str(request.node.path)).parent

    def load(path: str | Path, *, samples: int | None = None):  # type: ignore[no-untyped-def]
        p = Path(path)
        return em_settings.run.load_questions(p if p.is_absolute() else base / p,
                                              samples=samples)

    return load


@pytest.fixture
def em_evaluate(pytestconfig: pytest.Config, em_judge: Judge | None
                ) -> Callable[..., dict[str, QuestionResult]]:
    """`em_evaluate(questions, model=None, judge=None)` -> {question id: QuestionResult}.

    `model` defaults to the session's `--model` backend; any `Backend` works (a fine-tuned
    one, a mitigation wrapper). Results are keyed by question id.
    """
    from pytest_emergent.run.evaluate import evaluate
    from pytest_emergent.spec import QuestionFile

    run = pytestconfig.stash[run_key]

    def call(questions: QuestionFile | Sequence[Question], model: Backend | None = None,
             judge: Judge | None = None) -> dict[str, QuestionResult]:
        backend = model if model is not None else run.backends()[0]
        qs = list(questions.questions if isinstance(questions, QuestionFile) else questions)
        results = evaluate(qs, backend, judge or em_judge, run.options)
        return {q_id: res for (_src, q_id), res in results.items()}

    return call


@contextlib.contextmanager
def _explained() -> Iterator[None]:
    """An error of ours (bad input, a model or judge that cannot load, a damaged cache)
    errors the item with its message, which names the cause and the fix, not a traceback."""
    try:
        yield
    except EmergentError as exc:
        pytest.fail(f"{type(exc).__name__}: {exc}", pytrace=False)


@pytest.fixture
def em_result(request: pytest.FixtureRequest) -> QuestionResult:
    """The `QuestionResult` of the requesting question item (evaluated once per session)."""
    with _explained():
        sweep = request.config.stash.get(sweep_key, None)
        if sweep is not None:
            return sweep.result(request.node.stash[model_key], request.node.stash[question_key])
        return request.config.stash[run_key].result(request.node.stash[question_key])


@pytest.fixture
def em_file_result(request: pytest.FixtureRequest) -> FileResult:
    """The pooled `FileResult` of the requesting aggregate item."""
    with _explained():
        sweep = request.config.stash.get(sweep_key, None)
        if sweep is not None:
            return sweep.file_result(request.node.stash[model_key], request.node.stash[file_key])
        return request.config.stash[run_key].file_result(request.node.stash[file_key])
