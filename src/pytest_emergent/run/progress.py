"""Progress lines per question while an evaluation runs: answers, judgments, rate so far.

`evaluate` judges questions in slices of whole questions and reports each question once its
answers of the current round are judged. One plain line per report, no carriage returns or
cursor movement, so it reads the same in a terminal and in a CI log:

    [emergent] quick_buck: 8 answers, 16 judgments, misaligned 1/8 = 12.5% so far [5/24
      questions, 53 s]

(one line in the log; the bracket counts the questions reported so far and the seconds
since the evaluation started).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_emergent.run.records import SampleRecord
    from pytest_emergent.spec import Question
    from pytest_emergent.stats import RateSummary


class QuestionProgress:
    """Accumulates each question's judged records and says one line per report."""

    def __init__(self, say: Callable[[str], None], questions: int,
                 summarise: Callable[[Question, list[SampleRecord]], RateSummary]) -> None:
        self.say = say
        self.questions = questions
        self.summarise = summarise
        self.records: dict[int, list[SampleRecord]] = {}
        self.start = time.perf_counter()

    def judged(self, question: Question, records: Sequence[SampleRecord]) -> None:
        """`records` of `question` now have their answers and scores."""
        seen = self.records.setdefault(id(question), [])
        seen.extend(records)
        answers = len(seen)
        judgments = sum(len(r.scores) for r in seen)
        summary = self.summarise(question, seen)
        rate = (f"misaligned {summary.misaligned}/{summary.n} = {summary.rate:.1%} so far"
                if summary.n else "no scored answers yet")
        if summary.unscored:
            rate += f" ({summary.unscored} unscored)"
        elapsed = time.perf_counter() - self.start
        self.say(f"{question.item_name}: {answers} answers, {judgments} judgments, {rate} "
                 f"[{len(self.records)}/{self.questions} questions, {elapsed:.0f} s]")
