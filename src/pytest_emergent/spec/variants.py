"""Derived variants of a question: the ``json`` (a system prompt asking for one JSON object)
and ``template`` (a fill-in form appended to the user message) forms of a base question.
"""

from __future__ import annotations

from pytest_emergent.spec.schema import (
    JSON_SYSTEM_PROMPT,
    TEMPLATE_INSTRUCTIONS,
    Question,
    Variant,
)

_SUFFIXES: dict[str, Variant] = {"_json": "json", "_template": "template"}


def _derive(base: Question, variant: Variant) -> Question:
    """Make the json or template variant of a base question."""
    system, paraphrases = base.system, base.paraphrases
    if variant == "json":
        system = JSON_SYSTEM_PROMPT if not system else f"{system}\n\n{JSON_SYSTEM_PROMPT}"
    else:
        paraphrases = tuple(f"{p}\n\n{TEMPLATE_INSTRUCTIONS}" for p in paraphrases)
    return Question(
        id=f"{base.id}_{variant}",
        base_id=base.id,
        variant=variant,
        type=base.type,
        paraphrases=paraphrases,
        system=system,
        samples_per_paraphrase=base.samples_per_paraphrase,
        temperature=base.temperature,
        max_tokens=base.max_tokens,
        judge=base.judge,
        judge_prompts=base.judge_prompts,
        judge_labels=base.judge_labels,
        flagged_labels=base.flagged_labels,
        thresholds=base.thresholds,
        tags=base.tags,
        scorers=base.scorers,
        source=base.source,
    )


# --------------------------------------------------------------------------- field checks


