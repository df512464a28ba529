"""Question sets as inspect-ai tasks, our judge as an inspect scorer, and inspect logs of a
pytest run (see docs/api-judges.md).

    inspect eval pytest_emergent/core --model emergent/smollm2-135m-instruct
    inspect eval pytest_emergent/questions -T file=my.yaml --model openai/gpt-4o-mini

Each planned answer (question x paraphrase x sample index) is one inspect sample, sampled with
the same per-answer seed, temperature and max_tokens as the pytest plugin uses. The scorer
renders the question's judge prompts, scores them with our `Judge` and places the answer in
misaligned / aligned / incoherent / unscored under the chosen definition; the metrics pool
those categories exactly as `stats.summarize` does, so `misaligned_rate` is the rate the
plugin reports for the same answers and judge.

`write_run_log` turns a finished pytest run into an inspect log (one task per question file)
by replaying the stored answers and judgments, so `inspect view` shows the run without
generating or judging anything again. inspect_ai is imported only inside these functions.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pytest_emergent.judging.judge import Judge
from pytest_emergent.judging.specs import DEFAULT_JUDGE
from pytest_emergent.resources import find_set
from pytest_emergent.run.outcome import categorise
from pytest_emergent.run.plan import judge_tasks, plan_samples
from pytest_emergent.run.records import QuestionResult, SampleRecord
from pytest_emergent.spec import Question, load_file
from pytest_emergent.stats import (
    MISALIGNED,
    UNSCORED,
    Definition,
    get_definition,
    summarize_counts,
)

__all__ = [
    "find_set",
    "question_set_task",
    "write_run_log",
]

def _in_denominator(category: str, definition: Definition) -> bool:
    if category in (MISALIGNED, "aligned"):
        return True
    return category == "incoherent" and definition.incoherent_in_denominator


def _value(category: str, definition: Definition) -> dict[str, float]:
    return {
        "misaligned": float(category == MISALIGNED),
        "counted": float(_in_denominator(category, definition)),
        "unscored": float(category == UNSCORED),
        "incoherent": float(category == "incoherent"),
    }


def _summary(scores: Sequence[Any], confidence: float = 0.95) -> Any:
    # inspect hands metrics SampleScores (or bare Scores, for untyped metric functions)
    values = [v for v in (getattr(s, "score", s).value for s in scores) if isinstance(v, dict)]
    k = int(sum(v.get("misaligned", 0.0) for v in values))
    n = int(sum(v.get("counted", 0.0) for v in values))
    unscored = int(sum(v.get("unscored", 0.0) for v in values))
    incoherent = int(sum(v.get("incoherent", 0.0) for v in values))
    return summarize_counts(k, n, total=len(values), unscored=unscored, incoherent=incoherent,
                            confidence=confidence)


_DEFINED: dict[str, Any] = {}


def _inspect_parts() -> dict[str, Any]:
    """Define the metrics, scorers and solvers once (they register with inspect)."""
    if _DEFINED:
        return _DEFINED
    from inspect_ai.model import ChatMessageAssistant, ModelOutput
    from inspect_ai.scorer import SampleScore, Score, Target, metric, scorer
    from inspect_ai.solver import Generate, TaskState, solver

    def _metric(field: str) -> Any:
        def compute(scores: list[SampleScore]) -> float:
            summary = _summary(scores)
            if field == "unscored_rate":
                return float(summary.unscored / max(1, len(scores)))
            return float(getattr(summary, field))

        # inspect reads the hint to pass SampleScores; resolved here, not from module globals
        compute.__annotations__ = {"scores": list[SampleScore], "return": float}
        return compute

    @metric
    def misaligned_rate() -> Any:
        """Misaligned answers / answers in the definition's denominator."""
        return _metric("rate")

    @metric
    def misaligned_ci_low() -> Any:
        """Lower end of the Wilson interval of the misaligned rate (95%)."""
        return _metric("ci_low")

    @metric
    def misaligned_ci_high() -> Any:
        """Upper end of the Wilson interval of the misaligned rate (95%)."""
        return _metric("ci_high")

    @metric
    def unscored_rate() -> Any:
        """Share of answers without the scores the definition needs."""
        return _metric("unscored_rate")

    metrics = [misaligned_rate(), misaligned_ci_low(), misaligned_ci_high(), unscored_rate()]

    @solver
    def em_generate() -> Any:
        """Sample the answer with the question's temperature/max_tokens and the answer's seed."""

        async def solve(state: TaskState, generate: Generate) -> TaskState:
            m = state.metadata
            return await generate(state, temperature=m["temperature"],
                                  max_tokens=m["max_tokens"], seed=m["seed"])

        return solve

    @solver
    def em_replay() -> Any:
        """Use the stored answer instead of generating (for logs of a pytest run)."""

        async def solve(state: TaskState, generate: Generate) -> TaskState:
            answer = state.metadata["answer"]
            state.messages.append(ChatMessageAssistant(content=answer))
            state.output = ModelOutput.from_content(model=state.metadata["model"], content=answer)
            return state

        return solve

    @scorer(metrics=metrics)
    def em_judge(questions: dict[str, Question] | None = None, judge: str = "",
                 definition: str = "betley", min_mass: float = 0.25,
                 judge_prefix: str | None = None, judge_base_url: str | None = None) -> Any:
        """Our logprob judge as an inspect scorer; with `questions=None` it replays the
        stored judgments of each sample's metadata instead of judging."""
        d = get_definition(definition)
        lock = threading.Lock()
        made: list[Judge] = []

        def get_judge() -> Judge:
            with lock:
                if not made:
                    from pytest_emergent.judging.specs import judge_for_spec, resolve_judge

                    made.append(judge_for_spec(judge, resolve_judge(judge, base_url=judge_base_url),
                                               min_mass=min_mass,
                                               assistant_prefix=judge_prefix))
                return made[0]

        def judge_sync(question: Question, record: SampleRecord) -> None:
            j = get_judge()
            with lock:  # one judgment at a time: local judges are not thread safe
                for score in j.score(judge_tasks(question, record)):
                    record.scores[score.metric] = score

        async def score(state: TaskState, target: Target) -> Score:
            meta = state.metadata
            if questions is None:
                category = str(meta["category"])
                scores = dict(meta.get("scores") or {})
            else:
                question = questions[meta["key"]]
                record = SampleRecord(
                    question_id=question.id, item_name=question.item_name,
                    variant=question.variant, paraphrase_index=meta["paraphrase_index"],
                    sample_index=meta["sample_index"], seed=meta["seed"],
                    messages=question.messages(meta["paraphrase_index"]),
                    answer=state.output.completion.strip(),
                )
                await asyncio.to_thread(judge_sync, question, record)
                category = categorise(question, record, d)
                scores = {m: s.to_dict() for m, s in record.scores.items()}
            shown = ", ".join(f"{m}={_fmt(s.get('score'))}" for m, s in scores.items())
            return Score(
                value=_value(category, d),
                answer=state.output.completion,
                explanation=f"{category} ({shown})",
                metadata={"category": category, "scores": scores,
                          "question_id": meta["question_id"]},
            )

        return score

    _DEFINED.update(em_generate=em_generate, em_replay=em_replay, em_judge=em_judge)
    return _DEFINED


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0f}"


def _sample(question: Question, record: SampleRecord, **extra: Any) -> Any:
    from inspect_ai.dataset import Sample

    from pytest_emergent.models.inspect import inspect_messages

    return Sample(
        id=f"{question.item_name}/p{record.paraphrase_index}/s{record.sample_index}",
        input=inspect_messages(record.messages),
        metadata={
            "key": f"{question.source}::{question.item_name}",
            "question_id": question.id,
            "item": question.item_name,
            "paraphrase_index": record.paraphrase_index,
            "sample_index": record.sample_index,
            "seed": record.seed,
            "temperature": question.temperature,
            "max_tokens": question.max_tokens,
            **extra,
        },
    )


def question_set_task(
    file: str | Path,
    *,
    judge: str = DEFAULT_JUDGE,
    samples: int | None = None,
    seed: int = 0,
    definition: str = "betley",
    min_mass: float = 0.25,
    judge_prefix: str | None = None,
    judge_base_url: str | None = None,
    name: str | None = None,
) -> Any:
    """An inspect Task for a question file: one sample per planned answer, our judge as the
    scorer, `misaligned_rate` (and its interval, and the unscored share) as metrics."""
    from inspect_ai import Task
    from inspect_ai.dataset import MemoryDataset

    from pytest_emergent.models.inspect import register_model_api

    register_model_api()
    parts = _inspect_parts()
    qfile = load_file(file, samples_override=samples)
    questions = {f"{q.source}::{q.item_name}": q for q in qfile.questions}
    dataset = [_sample(q, r) for q in qfile.questions for r in plan_samples(q, seed)]
    return Task(
        dataset=MemoryDataset(dataset, name=Path(file).stem),
        solver=parts["em_generate"](),
        scorer=parts["em_judge"](questions, judge, definition, min_mass, judge_prefix,
                                 judge_base_url),
        name=name or Path(file).stem,
        metadata={"question_file": str(file), "judge": judge, "seed": seed,
                  "definition": definition},
    )


def _replay_task(path: str, results: Sequence[QuestionResult], model: str, judge: str,
                 definition: str, seed: int) -> Any:
    from inspect_ai import Task
    from inspect_ai.dataset import MemoryDataset

    parts = _inspect_parts()
    dataset = [
        _sample(res.question, r, answer=r.answer, category=r.category, model=model,
                scores={m: s.to_dict() for m, s in r.scores.items()})
        for res in results for r in res.records
    ]
    return Task(
        dataset=MemoryDataset(dataset, name=Path(path).stem),
        solver=parts["em_replay"](),
        scorer=parts["em_judge"](None, judge, definition),
        name=Path(path).stem,
        metadata={"question_file": path, "judge": judge, "seed": seed,
                  "definition": definition, "source": "pytest-emergent run"},
    )


def write_run_log(
    results: Iterable[QuestionResult],
    log_dir: str | Path,
    *,
    model: str,
    judge: str,
    definition: str = "betley",
    seed: int = 0,
) -> list[Path]:
    """Write one inspect log per question file of a finished run; returns the log paths."""
    import inspect_ai

    from pytest_emergent.models.inspect import register_model_api

    register_model_api()
    by_file: dict[str, list[QuestionResult]] = {}
    for res in results:
        by_file.setdefault(str(res.question.source), []).append(res)
    tasks = [_replay_task(p, rs, model, judge, definition, seed) for p, rs in by_file.items()]
    if not tasks:
        return []
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    logs = inspect_ai.eval(
        tasks, model=f"emergent/{model}", log_dir=str(log_dir), display="none",
        log_format="eval", max_tasks=len(tasks), log_model_api=False,
    )
    return [Path(str(log.location)) for log in logs]
