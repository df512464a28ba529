"""Sample -> judge -> stats for a set of questions; plain Python, no pytest.

All selected questions are evaluated together: every answer of every question goes to the
model backend in one `generate` call (the backend batches and buckets), then the judgments
in `Judge.score` calls of whole questions, at least `JUDGE_SLICE` judgments each, with a
progress line per question after each call (`run/progress.py`). Each answer's seed is derived
from the base seed, the question id, the paraphrase and the sample index, so an answer does
not depend on which other questions were selected.

For a local judge, judgments are sent sorted by metric and prompt text, so prompts rendered
from one template are neighbours and the judge reuses their shared prefix
(`models/hf/scoring.py`).

With `early_stop`, questions are sampled in rounds of `early_stop_round` answers (all open
questions of a round together); after each round a question stops once its Wilson interval,
at the Bonferroni-adjusted `stats.sequential_confidence`, lies wholly on one side of its
misaligned threshold (`stats.early_decision`). `QuestionResult.samples_saved` counts the
answers not drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from pytest_emergent.judging.judge import Judge, JudgeScore, JudgeTask
from pytest_emergent.judging.scorers import build as build_scorer
from pytest_emergent.judging.scorers import check_registered
from pytest_emergent.models.base import Backend, SampleRequest
from pytest_emergent.run.outcome import (
    categorise,
    effective_thresholds,
    result_from_records,
    summarise_question,
)
from pytest_emergent.run.plan import judge_tasks, plan_samples
from pytest_emergent.run.progress import QuestionProgress
from pytest_emergent.run.records import EvalOptions, QuestionResult, SampleRecord
from pytest_emergent.spec import Question
from pytest_emergent.stats import (
    RateSummary,
    early_decision,
    early_stop_looks,
    sequential_confidence,
)

#: a question, its records and their (judge task, record) pairs
_Judging = tuple[Question, list[SampleRecord], list[tuple[JudgeTask, SampleRecord]]]
#: a local judge scores at least this many judgments per call (whole questions), so a
#: progress line follows every slice while the template prefix is still computed once a call
JUDGE_SLICE = 128
#: the unscored reason of every judgment of an empty (or whitespace-only) answer
EMPTY_ANSWER = "empty answer"


def _answer_and_judge(
    plans: Sequence[tuple[Question, list[SampleRecord]]],
    model: Backend,
    judge: Judge | None,
    say: Callable[[str], None],
    judged: Callable[[Question, list[SampleRecord]], None] = lambda _q, _r: None,
) -> None:
    """Fill in answers, scorer values and judge scores of the given records, in place;
    `judged(question, records)` after each question's records are complete."""
    all_records = [r for _, recs in plans for r in recs]
    if not all_records:
        return
    # before any answer is generated: an unregistered hook scorer costs nothing
    check_registered([q for q, recs in plans if recs])
    questions = sum(1 for _, recs in plans if recs)
    say(f"generating {len(all_records)} answers to {questions} questions with {model.spec}")
    answers = model.generate(
        [
            SampleRequest(r.messages, temperature=q.temperature, max_tokens=q.max_tokens,
                          seed=r.seed)
            for q, recs in plans
            for r in recs
        ]
    )
    for record, answer in zip(all_records, answers, strict=True):
        record.answer = answer

    per_question: list[_Judging] = []
    for q, recs in plans:
        if not recs:
            continue
        scorers = {s.name: build_scorer(q, s) for s in q.scorers}
        for r in recs:
            r.scorer_values = {name: fn(r.answer) for name, fn in scorers.items()}
        for r in recs:
            if not r.answer.strip():  # nothing to judge: unscored with the reason, no call
                r.scores = {m: JudgeScore(m, None, None, EMPTY_ANSWER, 0.0)
                            for m in q.judge_prompts}
        per_question.append((q, recs, [(t, r) for r in recs if r.answer.strip()
                                       for t in judge_tasks(q, r)]))
    total = sum(len(pairs) for _, _, pairs in per_question)
    if total:
        if judge is None:
            raise ValueError("questions with judge_prompts need a judge")
        say(f"judging {total} prompts with {judge.spec}")
    for part in _slices(per_question, JUDGE_SLICE):
        pairs = [pair for _, _, question_pairs in part for pair in question_pairs]
        if pairs and judge is not None:
            if judge.backend.is_local:
                # one template's prompts next to each other: a local judge computes their
                # shared prefix once (scores go back to their records by metric, so order is
                # free); API judges gain nothing from it and keep the answers' order
                pairs.sort(key=lambda pair: (pair[0].metric, pair[0].prompt))
            scores = judge.score([task for task, _ in pairs])
            for (_task, record), score in zip(pairs, scores, strict=True):
                record.scores[score.metric] = score
        for q, recs, _ in part:
            judged(q, recs)


def _slices(per_question: list[_Judging], size: int) -> list[list[_Judging]]:
    """Consecutive questions grouped until each group has at least `size` judge tasks."""
    out: list[list[_Judging]] = [[]]
    count = 0
    for item in per_question:
        if count >= size:
            out.append([])
            count = 0
        out[-1].append(item)
        count += len(item[2])
    return [part for part in out if part]


def _round_order(records: list[SampleRecord]) -> list[SampleRecord]:
    """Sample index first, so every round of early stopping covers all paraphrases."""
    return sorted(records, key=lambda r: (r.sample_index, r.paraphrase_index))


def evaluate(
    questions: Sequence[Question],
    model: Backend,
    judge: Judge | None,
    options: EvalOptions,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[tuple[str, str], QuestionResult]:
    """Evaluate questions together; results keyed by (source path, question id)."""
    say = progress or (lambda _msg: None)
    plans = [(q, plan_samples(q, options.seed)) for q in questions]
    saved: dict[int, int] = {}
    stopped: dict[int, str] = {}
    lines = QuestionProgress(say, len(plans), lambda q, recs: _summary_so_far(q, recs, options))
    if not options.early_stop:
        _answer_and_judge(plans, model, judge, say, lines.judged)
        done = plans
    else:
        done, saved, stopped = _evaluate_in_rounds(plans, model, judge, options, say,
                                                   lines.judged)

    results: dict[tuple[str, str], QuestionResult] = {}
    for index, (q, recs) in enumerate(done):
        results[(str(q.source), q.id)] = result_from_records(
            q, recs, options, samples_saved=saved.get(index, 0), early_stop=stopped.get(index))
    return results


def _evaluate_in_rounds(
    plans: Sequence[tuple[Question, list[SampleRecord]]],
    model: Backend,
    judge: Judge | None,
    options: EvalOptions,
    say: Callable[[str], None],
    judged: Callable[[Question, list[SampleRecord]], None],
) -> tuple[list[tuple[Question, list[SampleRecord]]], dict[int, int], dict[int, str]]:
    """Early stopping: rounds of `early_stop_round` answers per open question."""
    size = max(1, options.early_stop_round)
    queues = [_round_order(recs) for _, recs in plans]
    taken: list[list[SampleRecord]] = [[] for _ in plans]
    open_ = set(range(len(plans)))
    stopped: dict[int, str] = {}
    while open_:
        batch = []
        for i in sorted(open_):
            start = len(taken[i])
            chunk = queues[i][start : start + size]
            taken[i].extend(chunk)
            batch.append((plans[i][0], chunk))
        _answer_and_judge(batch, model, judge, say, judged)
        for i in sorted(open_):
            q = plans[i][0]
            if len(taken[i]) >= len(queues[i]):
                open_.discard(i)
                continue
            decision = _early(q, taken[i], len(queues[i]), options)
            if decision is not None:
                stopped[i] = decision
                open_.discard(i)
                say(f"{q.item_name}: early {decision} after {len(taken[i])} of "
                    f"{len(queues[i])} answers")
    saved = {i: len(queues[i]) - len(taken[i]) for i in range(len(plans))}
    # records in plan order (paraphrase, sample), as without early stopping
    done = [
        (q, sorted(taken[i], key=lambda r: (r.paraphrase_index, r.sample_index)))
        for i, (q, _) in enumerate(plans)
    ]
    return done, saved, stopped


def _summary_so_far(question: Question, records: list[SampleRecord],
                    options: EvalOptions) -> RateSummary:
    """Categorise `records` and summarise them (for progress lines and early looks)."""
    for r in records:
        r.category = categorise(question, r, options.definition)
    return summarise_question(question, records, options)[0]


def _early(
    question: Question, records: list[SampleRecord], planned: int, options: EvalOptions
) -> str | None:
    """"pass" / "fail" when the interval at the per-look confidence clears the threshold."""
    threshold = effective_thresholds(question, options).max_misaligned
    if threshold is None:
        return None
    looks = len(early_stop_looks(planned, max(1, options.early_stop_round)))
    level = sequential_confidence(options.confidence, looks)
    summary = _summary_so_far(question, records, replace(options, confidence=level))
    return early_decision(summary, threshold)
