"""A misalignment (or trait) direction: the difference of mean residual-stream activations
over answer tokens between misaligned and aligned answers, per layer.

    from pytest_emergent.mitigations import direction_from_examples
    d = direction_from_examples(model, misaligned=[(messages, answer), ...],
                                aligned=[(messages, answer), ...])
    control = d.random_like(seed=0)   # same norm per layer, random orientation

Labels come from the caller (`direction_from_examples`) or from a judged evaluation
(`direction_from_results`: answers categorised misaligned vs aligned). Activations are read
at the output of each decoder layer for the answer's tokens only, with the prompt rendered by
the model's own chat template exactly as generation sees it. torch is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_emergent.errors import EmergentError
from pytest_emergent.models.base import Messages, as_messages

#: an answer with its conversation: (messages, answer text)
Labelled = tuple[Messages | Sequence[dict[str, str]], str]


@dataclass(frozen=True)
class Direction:
    """One vector per layer (layer `i` = the residual stream after decoder layer `i`)."""

    vectors: Mapping[int, tuple[float, ...]]
    #: how it was made, for reports and cache keys
    source: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.vectors:
            raise EmergentError("a direction needs at least one layer")
        sizes = {len(v) for v in self.vectors.values()}
        if len(sizes) != 1:
            raise EmergentError(f"a direction's vectors must share one size (got {sorted(sizes)})")

    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)

    def norm(self, layer: int) -> float:
        return math.sqrt(sum(x * x for x in self.vectors[layer]))

    def at(self, layers: Iterable[int]) -> Direction:
        """The same direction restricted to `layers`."""
        chosen = list(layers)
        missing = [i for i in chosen if i not in self.vectors]
        if missing:
            raise EmergentError(f"direction has no vector for layer(s) {missing} "
                                f"(it has {self.layers})")
        return Direction({i: self.vectors[i] for i in chosen},
                         {**self.source, "layers": chosen})

    def random_like(self, seed: int = 0) -> Direction:
        """A control: per layer, a random (Gaussian, seeded) direction of the same norm."""
        rng = random.Random(f"random-direction-{seed}")
        out: dict[int, tuple[float, ...]] = {}
        for layer in self.layers:
            raw = [rng.gauss(0.0, 1.0) for _ in self.vectors[layer]]
            size = math.sqrt(sum(x * x for x in raw)) or 1.0
            target = self.norm(layer)
            out[layer] = tuple(x * target / size for x in raw)
        return Direction(out, {"kind": "random", "seed": seed, "like": self.digest})

    @property
    def digest(self) -> str:
        """A content hash (first 16 hex of sha256) of the vectors, for cache keys."""
        payload = json.dumps({str(k): [round(x, 7) for x in v] for k, v in
                              sorted(self.vectors.items())}, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {"vectors": {str(k): list(v) for k, v in sorted(self.vectors.items())},
                "source": dict(self.source)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Direction:
        vectors = {int(k): tuple(float(x) for x in v) for k, v in data["vectors"].items()}
        return cls(vectors, dict(data.get("source", {})))


def _model_and_tokens(backend: Any) -> tuple[Any, Any]:
    model = getattr(backend, "model", None)
    if model is None or not hasattr(backend, "render_prompt"):
        raise EmergentError(
            f"model {getattr(backend, 'spec', backend)!r}: directions need a local "
            "transformers backend (a checkpoint, adapter, .gguf or the embedded model)"
        )
    return model, backend


def mean_answer_activations(
    backend: Any, examples: Sequence[Labelled], layers: Iterable[int] | None = None
) -> dict[int, Any]:
    """Per layer, the mean over examples of the mean activation over the answer's tokens.

    Each example is `(messages, answer)`; the prompt is the chat template's rendering of
    `messages` with the generation prompt, followed by the answer's tokens, as in sampling.
    Answers with no tokens are skipped; at least one must remain.
    """
    import torch

    from pytest_emergent.mitigations.hooks import decoder_layers

    model, tok = _model_and_tokens(backend)
    blocks = decoder_layers(model)
    chosen = list(range(len(blocks))) if layers is None else sorted(set(layers))
    captured: dict[int, Any] = {}

    def grab(index: int) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            captured[index] = output[0] if isinstance(output, tuple) else output
        return hook

    sums: dict[int, Any] = {}
    count = 0
    device = next(model.parameters()).device
    handles = [blocks[i].register_forward_hook(grab(i)) for i in chosen]
    try:
        with torch.inference_mode():
            for messages, answer in examples:
                prompt = tok.encode(tok.render_prompt(as_messages(messages)))
                reply = tok.encode(answer)
                if not reply:
                    continue
                ids = torch.tensor([prompt + reply], dtype=torch.long, device=device)
                model(input_ids=ids, use_cache=False, logits_to_keep=1)
                for i in chosen:
                    mean = captured[i][0, len(prompt):, :].float().mean(dim=0)
                    sums[i] = mean if i not in sums else sums[i] + mean
                count += 1
    finally:
        for handle in handles:
            handle.remove()
    if count == 0:
        raise EmergentError("no answer with tokens to read activations from")
    return {i: sums[i] / count for i in chosen}


def direction_from_examples(
    backend: Any,
    misaligned: Sequence[Labelled],
    aligned: Sequence[Labelled],
    *,
    layers: Iterable[int] | None = None,
    name: str = "misaligned-minus-aligned",
) -> Direction:
    """mean activation(misaligned answers) - mean activation(aligned answers), per layer."""
    if not misaligned or not aligned:
        raise EmergentError(
            f"a direction needs answers of both kinds (got {len(misaligned)} misaligned and "
            f"{len(aligned)} aligned)"
        )
    chosen = None if layers is None else list(layers)
    pos = mean_answer_activations(backend, misaligned, chosen)
    neg = mean_answer_activations(backend, aligned, chosen)
    vectors = {i: tuple(float(x) for x in (pos[i] - neg[i]).tolist()) for i in pos}
    source = {"kind": "mean-difference", "name": name, "model": getattr(backend, "fingerprint", ""),
              "n_misaligned": len(misaligned), "n_aligned": len(aligned)}
    return Direction(vectors, source)


def direction_from_results(
    backend: Any,
    results: Any,
    *,
    layers: Iterable[int] | None = None,
    positive: str = "misaligned",
    negative: str = "aligned",
) -> Direction:
    """A direction from judged answers: `results` is a `QuestionResult`, a mapping or list of
    them (as `run_questions` / `em_evaluate` return). Answers categorised `positive` vs
    `negative` (for judge-free scorer questions, use `direction_from_examples`)."""
    items = results.values() if hasattr(results, "values") else (
        [results] if hasattr(results, "records") else results)
    pos: list[Labelled] = []
    neg: list[Labelled] = []
    for result in items:
        for record in result.records:
            if record.category == positive:
                pos.append((record.messages, record.answer))
            elif record.category == negative:
                neg.append((record.messages, record.answer))
    return direction_from_examples(backend, pos, neg, layers=layers,
                                   name=f"{positive}-minus-{negative}")
