"""Derived variants of a question: the ``json`` (a system prompt asking for one JSON object)
and ``template`` (a fill-in form appended to the user message) forms of a base question, and
the named variants a file defines (a system prompt and/or text around each paraphrase).
"""

from __future__ import annotations

from dataclasses import replace

from pytest_emergent.spec.schema import (
    JSON_SYSTEM_PROMPT,
    TEMPLATE_INSTRUCTIONS,
    Question,
    Variant,
    VariantSpec,
)

_SUFFIXES: dict[str, Variant] = {"_json": "json", "_template": "template"}


def _derive(base: Question, variant: Variant | VariantSpec) -> Question:
    """Make the json, template or a custom named variant of a base question."""
    system, paraphrases = base.system, base.paraphrases
    if isinstance(variant, VariantSpec):
        name = variant.name
        if variant.system is not None:
            system = (variant.system if variant.replace_system or not system
                      else f"{system}\n\n{variant.system}")
        paraphrases = tuple(f"{variant.prefix}{p}{variant.suffix}" for p in paraphrases)
    elif variant == "json":
        name = variant
        system = JSON_SYSTEM_PROMPT if not system else f"{system}\n\n{JSON_SYSTEM_PROMPT}"
    else:
        name = variant
        paraphrases = tuple(f"{p}\n\n{TEMPLATE_INSTRUCTIONS}" for p in paraphrases)
    return replace(base, id=f"{base.id}_{name}", base_id=base.id, variant=name,
                   paraphrases=paraphrases, system=system)


# --------------------------------------------------------------------------- field checks


