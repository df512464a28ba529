"""inspect-ai entry point (`[project.entry-points.inspect_ai]`): registers our tasks and the
`emergent/SPEC` model provider, so `inspect eval pytest_emergent/core` works.

Importing this module imports inspect_ai; the pytest plugin never imports it.
"""

from __future__ import annotations

from typing import Any

from inspect_ai import Task, task

from pytest_emergent.integrations.inspect.tasks import find_set, question_set_task
from pytest_emergent.judging.specs import DEFAULT_JUDGE
from pytest_emergent.models.inspect import register_model_api

register_model_api()


@task
def core(
    judge: str = DEFAULT_JUDGE,
    samples: int | None = None,
    seed: int = 0,
    definition: str = "betley",
    judge_base_url: str | None = None,
    judge_prefix: str | None = None,
) -> Task:
    """The bundled core set (evals/core.yaml), judged by `judge` (any model spec)."""
    return question_set_task(find_set("core"), judge=judge, samples=samples, seed=seed,
                             definition=definition, judge_base_url=judge_base_url,
                             judge_prefix=judge_prefix)


@task
def questions(
    file: str,
    judge: str = DEFAULT_JUDGE,
    samples: int | None = None,
    seed: int = 0,
    definition: str = "betley",
    judge_base_url: str | None = None,
    judge_prefix: str | None = None,
) -> Task:
    """Any question file: `inspect eval pytest_emergent/questions -T file=PATH`."""
    return question_set_task(file, judge=judge, samples=samples, seed=seed,
                             definition=definition, judge_base_url=judge_base_url,
                             judge_prefix=judge_prefix)


__all__: list[Any] = ["core", "questions"]
