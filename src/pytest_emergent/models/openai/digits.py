"""Scoring numbers digit by digit over a chat API (`openai-digits:MODEL`), for judges whose
tokenizer spells every number as single digits (Qwen2.5, SmolLM2, Llama 3 groups of three):
there the first token's top logprobs hold only the first digit, and "4" stands for 4, 40..49
and every number it starts.

The probability of a reply that is exactly the number `s` is walked down the digits:
P("42") = P("4") · P("2" | "4") · P(no further digit | "42"), each factor read from the
top-20 next-token logprobs of one request that continues the assistant turn with the digits
so far (`continue_final_message`, which vLLM and the bundled server honour). Branches below
`MIN_BRANCH` are not expanded, and only the listed top-20 tokens count as "no further digit",
so the result is a lower bound on each candidate (`exact=False`), like the one-token reading.
A tokenizer with multi-digit tokens works too ("42" is then one step): the walk follows
whatever digit runs the tokens carry, and a first token that is only whitespace (a space
after "Score:") is followed to the digits after it. Non-numeric candidates (REFUSAL, CODE)
are read from the first token, as in the one-token mapping.

What it conditions on is the continuation as the server tokenizes it. The in-process exact
judge instead heals a prefix that ends in a space (it divides by the mass of every token
that starts with one), so with such a prefix the two readings differ by that ratio.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence

from pytest_emergent.models.base import CandidateProbs
from pytest_emergent.models.openai.responses import map_top_logprobs

__all__ = ["MIN_BRANCH", "digit_probs"]

#: a digit string reached with less probability than this is not expanded further
MIN_BRANCH = 1e-3
#: top logprobs of the next token after the assistant turn so far plus the given text
Ask = Callable[[str], Awaitable[Sequence[tuple[str, float]]]]


def _digits(text: str) -> str:
    run = ""
    for ch in text:
        if not ("0" <= ch <= "9"):
            break
        run += ch
    return run


def _add(table: dict[str, float], key: str, value: float) -> None:
    table[key] = table.get(key, 0.0) + value


async def digit_probs(ask: Ask, candidates: Sequence[str], *,
                      min_branch: float = MIN_BRANCH) -> CandidateProbs:
    """Each candidate's probability as the whole reply, walking numbers digit by digit."""
    numbers = [c for c in candidates if c.isascii() and c.isdigit()]
    # digit strings worth reading further: a candidate starts with them
    useful = {c[:i] for c in numbers for i in range(1, len(c) + 1)}
    root = await ask("")
    words = map_top_logprobs(root, [c for c in candidates if c not in numbers])
    # keys are continuation texts: optional leading whitespace (a first token that is only a
    # space, as after "Score:"), then digits
    ends: dict[str, float] = {}  # P(the reply's number is exactly these digits)
    reach: dict[str, float] = {}  # P(the reply starts with this text, more may follow)

    def absorb(prefix: str, weight: float, top: Sequence[tuple[str, float]]) -> None:
        digits = prefix.lstrip()
        for token, logprob in top:
            p = weight * (math.exp(logprob) if logprob is not None and logprob > -1e30 else 0.0)
            text = token.lstrip() if not digits else token
            lead = token[:len(token) - len(text)]
            run = _digits(text)
            if not run:
                if digits and text:  # something else after the digits: the number ended
                    _add(ends, digits, p)
                elif not digits and not text and len(prefix + lead) <= 2:
                    _add(reach, prefix + lead, p)  # whitespace before the number
                continue
            if len(run) < len(text):  # digits, then something else, in one token
                _add(ends, digits + run, p)
            else:
                _add(reach, prefix + lead + run, p)

    absorb("", 1.0, root)
    while True:
        frontier = [s for s, p in reach.items()
                    if p >= min_branch and (s.lstrip() in useful or not s.strip())]
        if not frontier:
            break
        weights = {s: reach.pop(s) for s in frontier}
        tops = await asyncio.gather(*(ask(s) for s in frontier))
        for prefix, top in zip(frontier, tops, strict=True):
            absorb(prefix, weights[prefix], top)
    probs = dict(words.probs)
    for number in numbers:
        if ends.get(number, 0.0) > 0.0:
            probs[number] = ends[number]
    return CandidateProbs(probs=probs, exact=False, top=words.top)
