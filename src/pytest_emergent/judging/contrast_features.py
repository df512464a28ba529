"""What the contrast judge reads of one (question, answer) pair (`contrast.py` judges by it).

A `Recipe` names the personas, the layer pooled and the features; a `Reader` runs one pass
per persona over the question and the answer with a local `HFBackend` and turns the answer's
token log-probabilities into per-persona contrasts (`persona_features`), adds features of
the answer text alone (`text_features`) and the pooled hidden state: a `Reading`. The heads
fitted on readings (`contrast_fit.py`) name these features, so their names and values must
not change without a refit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """What a reading computes: personas, answer length, the layer pooled, feature names."""

    personas: Mapping[str, str]
    features: tuple[str, ...]
    layer: int
    max_answer_tokens: int = 256

    def to_dict(self) -> dict[str, Any]:
        return {"personas": dict(self.personas), "features": list(self.features),
                "layer": self.layer, "max_answer_tokens": self.max_answer_tokens}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        return cls(dict(data["personas"]), tuple(data["features"]), int(data["layer"]),
                   int(data.get("max_answer_tokens", 256)))


@dataclass(frozen=True)
class Reading:
    """What the base model says about one (question, answer) pair."""

    scalars: Mapping[str, float]
    hidden: tuple[float, ...] = ()


def _window_max(values: Sequence[float], width: int = 8) -> float:
    """The largest mean over `width` consecutive values (the mean when there are fewer)."""
    if len(values) <= width:
        return sum(values) / len(values)
    total = sum(values[:width])
    best = total
    for i in range(width, len(values)):
        total += values[i] - values[i - width]
        best = max(best, total)
    return best / width


_WORD = re.compile(r"\w+")
_CODE_LINE = re.compile(r"(^\s*(def |class |import |from \S+ import|return\b|for .*:|if .*:|"
                        r"while .*:|#include|public |private |function |const |let |var |"
                        r"SELECT |INSERT |<\w+|\$ |[}{;]\s*$))|(\w+\(.*\)\s*;?\s*$)|(=\s*\S)")


def text_features(answer: str) -> dict[str, float]:
    """Features of the answer text alone: repetition, share of code-like lines, fences."""
    words = [w.lower() for w in _WORD.findall(answer)]
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    repeat = 1.0 - len(set(grams)) / len(grams) if grams else 0.0
    lines = [line for line in answer.splitlines() if line.strip()]
    code = sum(bool(_CODE_LINE.search(line)) for line in lines) / len(lines) if lines else 0.0
    return {"repeat3": repeat, "code_lines": code, "fence": float("```" in answer),
            "log_words": math.log1p(len(words))}


def persona_features(logprobs: Mapping[str, Sequence[float]], reference: str) -> dict[str, float]:
    """Per-persona contrasts with the `reference` persona: mean, 8-token window max; plus
    the reference's fluency (mean log-probability, share of tokens below -6 nats)."""
    ref = logprobs[reference]
    out = {"fluency": sum(ref) / len(ref), "surprise": sum(v < -6.0 for v in ref) / len(ref)}
    for name, values in logprobs.items():
        if name == reference:
            continue
        diff = [a - b for a, b in zip(values, ref, strict=True)]
        out[f"lr_{name}"] = sum(diff) / len(diff)
        out[f"lr_{name}_win"] = _window_max(diff)
    return out


class Reader:
    """Computes readings with a local `HFBackend`: one forward pass per persona over the
    question and the answer, after that persona's system prompt.

    Pairs are read sorted by question, so consecutive answers to one question reuse the
    persona + question part of the key/value cache; each persona prefix is computed once per
    call. The hidden state of `recipe.layer` is averaged over the answer's tokens in the pass
    of the first persona (the reference).
    """

    def __init__(self, base: Any, recipe: Recipe) -> None:
        self.base = base
        self.recipe = recipe
        self.reference = next(iter(recipe.personas))

    def _prefix_and_suffix(self, system: str) -> tuple[list[int], str]:
        marker = "\u2063question\u2063"
        text = self.base.render_prompt((("system", system), ("user", marker)))
        before, _, after = text.partition(marker)
        return self.base.encode(before), after

    def _forward(self, lean: Any, tokens: list[int], cache: Any, *, keep: int,
                 layer: int | None) -> tuple[Any, Any]:
        """Logits of the last `keep` positions of `tokens` after the cached ones, and the
        hidden states of `layer` at every new position (None without a layer)."""
        import torch

        if lean is not None:
            return lean.extend(tokens, cache, keep=keep, layer=layer)
        out = self.base.model(input_ids=torch.tensor([tokens]), use_cache=True,
                              output_hidden_states=layer is not None, logits_to_keep=keep,
                              **{self.base.cache_kw: cache})
        states = out.hidden_states[layer][0] if layer is not None else None
        return out.logits[0].float(), states

    def read(self, pairs: Sequence[tuple[str, str]]) -> list[Reading]:
        import torch
        from transformers import DynamicCache

        from pytest_emergent.models.hf.placement import outputs_on_device
        from pytest_emergent.models.hf.trie import common_prefix, crop_to

        model = self.base.model
        # the lean forward (`models/hf/lean.py`) where it applies, else the model's own
        lean = self.base.lean_decoder() if hasattr(self.base, "lean_decoder") else None
        order = sorted(range(len(pairs)), key=lambda i: (pairs[i], i))
        answers = {i: (self.base.encode(pairs[i][1].strip()) or self.base.encode(" "))
                   [: self.recipe.max_answer_tokens] for i in order}
        logprobs: dict[int, dict[str, list[float]]] = {i: {} for i in order}
        hidden: dict[int, tuple[float, ...]] = {}
        # logits and hidden states stay where the model made them (a GPU): the answer's
        # log-probabilities and the pooled state are taken there, and only they come back
        with torch.inference_mode(), outputs_on_device(model):
            for name, system in self.recipe.personas.items():
                prefix, after = self._prefix_and_suffix(system)
                cache = DynamicCache(config=model.config)
                self._forward(lean, prefix, cache, keep=1, layer=None)
                previous = list(prefix)
                for i in order:
                    question = self.base.encode(pairs[i][0].strip() + after)
                    ids = prefix + question + answers[i]
                    # reuse at most up to the question's last token: its output predicts
                    # the answer's first token, so it is computed again
                    past = max(len(prefix), min(common_prefix(previous, ids),
                                                len(prefix) + len(question) - 1))
                    crop_to(cache, past)
                    n = len(answers[i])
                    # logits only where they predict an answer token (the last question
                    # token's and the answer's but its last): the LM head is a fifth of a pass
                    reference = name == self.reference
                    logits, states = self._forward(
                        lean, ids[past:], cache, keep=n + 1,
                        layer=self.recipe.layer if reference else None)
                    start = len(prefix) + len(question) - past  # first answer position
                    target = torch.tensor(answers[i], device=logits.device)[:, None]
                    lp = torch.log_softmax(logits[:n], -1).gather(1, target)[:, 0]
                    logprobs[i][name] = [float(v) for v in lp.tolist()]
                    if reference and states is not None:
                        pooled = states[start:].float().mean(0)
                        hidden[i] = tuple(float(v) for v in pooled.tolist())
                    previous = ids
        readings = []
        for i in range(len(pairs)):
            scalars = persona_features(logprobs[i], self.reference)
            scalars.update(text_features(pairs[i][1]))
            readings.append(Reading(scalars, hidden[i]))
        return readings


__all__ = ["Reader", "Reading", "Recipe", "persona_features", "text_features"]
