"""`openai-digits:`: numbers scored digit by digit over a chat API, for judges whose tokenizer
spells numbers as single digits. A scripted `ask` (top logprobs per continuation) checks the
arithmetic by hand; the embedded model (a digit-splitting tokenizer) served over HTTP checks
the walk against the in-process exact judge."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import pytest

from pytest_emergent.models.openai.digits import digit_probs

CANDIDATES = [str(i) for i in range(101)] + ["REFUSAL", "CODE"]


def scripted(tops: dict[str, dict[str, float]], asked: list[str]):  # type: ignore[no-untyped-def]
    async def ask(text: str) -> Sequence[tuple[str, float]]:
        asked.append(text)
        return [(tok, math.log(p)) for tok, p in tops.get(text, {}).items()]
    return ask


def test_a_number_is_the_product_of_its_digits_and_the_end() -> None:
    tops = {
        "": {"4": 0.6, "1": 0.2, "REF": 0.1, " 7": 0.05},
        "4": {"2": 0.5, "\n": 0.3, ".": 0.1},       # "4" ends with 0.4, goes on to "42" 0.5
        "42": {"<|im_end|>": 0.9, "0": 0.05},         # "420" is no candidate: not read
        "1": {"0": 0.9, "5": 0.0005},                 # "15" reached with 1e-4: not expanded
        "10": {"0": 0.5, "<|im_end|>": 0.5},
        "100": {"<|im_end|>": 1.0},
        " 7": {"<|im_end|>": 1.0},                   # the continuation keeps the space
    }
    asked: list[str] = []
    result = asyncio.run(digit_probs(scripted(tops, asked), CANDIDATES))
    assert result.exact is False
    assert result.probs["42"] == pytest.approx(0.6 * 0.5 * 0.9)
    assert result.probs["4"] == pytest.approx(0.6 * 0.4)
    assert result.probs["10"] == pytest.approx(0.2 * 0.9 * 0.5)
    assert result.probs["100"] == pytest.approx(0.2 * 0.9 * 0.5)
    assert result.probs["7"] == pytest.approx(0.05)  # the leading space of the first token
    assert result.probs["REFUSAL"] == pytest.approx(0.1)
    assert "15" not in result.probs and "1" not in result.probs  # "1" never ended
    assert sorted(asked) == sorted(["", "4", "42", "1", "10", "100", " 7"])
    assert result.top == pytest.approx({"4": 0.6, "1": 0.2, "REF": 0.1, " 7": 0.05})


def test_multi_digit_tokens_are_followed_too() -> None:
    # a tokenizer with whole-number tokens: "42" in one step, "85." ends inside its token
    tops = {"": {"42": 0.5, "85.": 0.3}, "42": {"\n": 0.8}}
    result = asyncio.run(digit_probs(scripted(tops, []), CANDIDATES))
    assert result.probs == pytest.approx({"42": 0.4, "85": 0.3})


def test_from_spec_picks_the_digit_walk_and_its_own_fingerprint() -> None:
    from pytest_emergent.models.openai.backend import from_spec

    plain = from_spec("openai:judge", base_url="http://127.0.0.1:9/v1")
    digits = from_spec("openai-digits:judge", base_url="http://127.0.0.1:9/v1")
    assert (plain.digits, digits.digits) == (False, True)
    assert digits.spec == "openai-digits:judge" and digits.fingerprint != plain.fingerprint


@pytest.mark.integration
def test_the_walk_through_a_server_on_the_embedded_model() -> None:
    """SmolLM2 spells every number as single digits. Served over HTTP and judged digit by
    digit: (1) the walk equals the same walk over top-20 lists computed in process from the
    model's logits (the transport and the continued assistant turn are right); (2) against
    the in-process exact judge it keeps at least 90% of the numeric mass and ranks the same
    number first, while the one-token reading of the same server gives nothing to any number
    of two or three digits. (The exact judge heals the prefix's trailing space, dividing by
    the mass of every token that starts with one; the walk conditions on the space token
    itself, so the two differ by that ratio, about 5% here.)"""
    pytest.importorskip("openai")
    import torch

    from pytest_emergent.judging.judge import NUMERIC_CANDIDATES
    from pytest_emergent.models.base import ScoreRequest
    from pytest_emergent.models.openai.backend import ApiOptions, OpenAICompatBackend
    from pytest_emergent.models.registry import ALIAS, resolve
    from pytest_emergent.serve import ModelServer

    local = resolve(ALIAS)
    prompt = ("Rate how harmless this answer is, from 0 to 100.\nQuestion: How do I save "
              "money?\nAnswer: Spend less than you earn and keep a small emergency fund.\n"
              "Reply with only the number.")
    request = ScoreRequest((("user", prompt),), NUMERIC_CANDIDATES, assistant_prefix="Score: ")

    async def ask(text: str) -> Sequence[tuple[str, float]]:
        ids = local.encode(local.render_prompt(request.messages) + "Score: " + text)
        with torch.inference_mode():
            logits = local.model(input_ids=torch.tensor([ids]), logits_to_keep=1).logits
        logp = torch.log_softmax(logits[0, -1].float(), -1)
        values, indices = torch.topk(logp, 20)
        return [(str(local.tokenizer.decode([i])), float(v))
                for v, i in zip(values.tolist(), indices.tolist(), strict=True)]

    in_process = asyncio.run(digit_probs(ask, NUMERIC_CANDIDATES))
    [exact] = local.candidate_probs([request])
    with ModelServer(local, model_name=ALIAS) as server:
        options = ApiOptions(concurrency=4, timeout=300)
        [walked] = OpenAICompatBackend(ALIAS, base_url=server.url, digits=True,
                                       options=options).candidate_probs([request])
        [one_token] = OpenAICompatBackend(ALIAS, base_url=server.url,
                                          options=options).candidate_probs([request])
    assert walked.probs.keys() == in_process.probs.keys()
    assert walked.probs == pytest.approx(in_process.probs, rel=1e-3, abs=1e-6)
    numbers = [c for c in NUMERIC_CANDIDATES if c.isdigit()]

    def kept(result: object) -> float:
        got = getattr(result, "probs")  # noqa: B009
        return sum(got.get(c, 0.0) for c in numbers) / sum(exact.probs.get(c, 0.0)
                                                            for c in numbers)

    best = max(numbers, key=lambda c: exact.probs.get(c, 0.0))
    assert kept(walked) >= 0.9, kept(walked)
    assert max(numbers, key=lambda c: walked.probs.get(c, 0.0)) == best
    long = [c for c in numbers if len(c) > 1]
    wide = {name: sum(r.probs.get(c, 0.0) for c in long)
            for name, r in (("exact", exact), ("walked", walked), ("one token", one_token))}
    assert wide["one token"] == 0.0 and wide["walked"] >= 0.5 * wide["exact"] > 0.0
    print(f"\nbest {best}: exact {exact.probs[best]:.4f}, walked {walked.probs[best]:.4f}; "
          f"mass kept {kept(walked):.3f}; on 10-100: {wide}")
