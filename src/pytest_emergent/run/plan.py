"""The plan of an evaluation: which answers a question needs, each with its own seed, and
which judgments each answer needs."""

from __future__ import annotations

import hashlib

from pytest_emergent.judging.judge import JudgeTask
from pytest_emergent.run.records import SampleRecord
from pytest_emergent.spec import NUMERIC_TYPE, Question, render_judge_prompt


def sample_seed(seed: int, question_id: str, paraphrase_index: int, sample_index: int) -> int:
    """A stable 31-bit seed for one answer; independent of what else is evaluated."""
    key = f"{seed}\x00{question_id}\x00{paraphrase_index}\x00{sample_index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") & 0x7FFFFFFF


def plan_samples(question: Question, seed: int) -> list[SampleRecord]:
    """The answers a question needs, without their text yet."""
    records = []
    for p_index in range(len(question.paraphrases)):
        messages = question.messages(p_index)
        for s_index in range(question.samples_per_paraphrase):
            records.append(
                SampleRecord(
                    question_id=question.id,
                    item_name=question.item_name,
                    variant=question.variant,
                    paraphrase_index=p_index,
                    sample_index=s_index,
                    seed=sample_seed(seed, question.id, p_index, s_index),
                    messages=messages,
                    answer="",
                )
            )
    return records


def judge_tasks(question: Question, record: SampleRecord) -> list[JudgeTask]:
    """One task per judge metric of the question for one answer."""
    kind = "numeric" if question.type == NUMERIC_TYPE else "categorical"
    user_text = question.paraphrases[record.paraphrase_index]
    return [
        JudgeTask(
            metric=metric,
            prompt=render_judge_prompt(template, user_text, record.answer),
            kind=kind,
            labels=tuple(question.judge_labels.get(metric, ())),
            question=user_text,
            answer=record.answer,
        )
        for metric, template in question.judge_prompts.items()
    ]
