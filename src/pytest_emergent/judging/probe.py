"""A judge trained on labelled answers: linear probes on a local model's hidden states.

The embedded 135M model's own 0-100 readout barely depends on the answer it rates
(docs/judging.md §7), but its hidden states do. A *probe head* per metric maps the hidden
state of one layer, at the last token of the judge prompt (after the assistant prefix
``"Score:"``), to P(positive): misaligned for ``aligned``, incoherent for ``coherent``. The
judge's score is ``100 * (1 - P)``, so the usual cut-offs and definitions apply unchanged.

- ``--judge probe:SPEC`` judges with the heads fitted for the model SPEC names (matched by
  weights fingerprint): the package ships heads for the embedded model, and
  ``python -m pytest_emergent.judging.probe`` fits new ones into ``<cache root>/probes``.
- A probe cannot answer REFUSAL or CODE, and scores only the metrics it has heads for (any
  other metric comes back unscored with the reason).
- Fitting reports *held-out-theme* figures: heads fitted on the answers to half of the
  questions (all variants) and measured on the other half, then swapped.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_emergent.errors import BackendError, ModelSpecError
from pytest_emergent.judging.judge import Judge, JudgeScore, JudgeTask
from pytest_emergent.models.base import (
    CandidateProbs,
    SampleRequest,
    ScoreRequest,
    weights_fingerprint,
)
from pytest_emergent.resources import DATA_DIR, find_fitted, fitted_fingerprint

PREFIX = "Score:"
SHIPPED_DIR = DATA_DIR
_CANDIDATE = "probe:"


@dataclass(frozen=True)
class Head:
    """Standardise, then logistic regression: P = sigmoid(((h - mean) / std) . w + b)."""

    layer: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weight: tuple[float, ...]
    bias: float

    def probability(self, hidden: Sequence[float]) -> float:
        z = self.bias + sum((h - m) / s * w for h, m, s, w in
                            zip(hidden, self.mean, self.std, self.weight, strict=True))
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


@dataclass(frozen=True)
class Heads:
    """The heads of one base model, with what they were fitted on and how well they did."""

    base_fingerprint: str
    heads: dict[str, Head]
    info: dict[str, Any]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_fingerprint": self.base_fingerprint,
            "heads": {m: {"layer": h.layer, "mean": list(h.mean), "std": list(h.std),
                          "weight": list(h.weight), "bias": h.bias}
                      for m, h in self.heads.items()},
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Heads:
        heads = {m: Head(int(h["layer"]), tuple(h["mean"]), tuple(h["std"]),
                         tuple(h["weight"]), float(h["bias"]))
                 for m, h in data["heads"].items()}
        return cls(str(data["base_fingerprint"]), heads, dict(data.get("info") or {}))


def find_heads(base_fingerprint: str, search: Sequence[Path]) -> Heads:
    """The heads fitted for a base model, from the first directory that has them."""
    data = find_fitted("probe*.json", base_fingerprint, search)
    if data is not None:
        return Heads.from_dict(data)
    raise ModelSpecError(
        f"no probe heads for the model with fingerprint {base_fingerprint}; looked in "
        f"{[str(d) for d in search]}. Fit them with: python -m pytest_emergent.judging.probe_fit "
        "--model SPEC"
    )


class _Reached(Exception):
    """Raised by the hook on the probed layer: the layers above it need not run."""


def _decoder_layers(model: Any) -> Any:
    """The model's list of decoder layers (the ModuleList as long as the layer count)."""
    import torch

    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    return None


def _hidden_state(base: Any, input_ids: Any, cache: Any, layer: int,
                  depth: int | None = None) -> list[float]:
    """`hidden_states[layer]` at the last position of `input_ids` after `cache`.

    The layers above `layer` do not change it, so the forward pass stops after decoder layer
    `depth - 1` (default `layer`; a third less work for the shipped heads, which read layer 20
    of 30). A cache then holds keys and values for the first `depth` layers, which is what a
    later call reusing it needs as long as every call of a run passes the same `depth`. The
    last layer's entry is normalised by the model, and the embeddings have no layer, so those
    take the full pass.
    """
    kw = {base.cache_kw: cache} if cache is not None else {}
    layers = _decoder_layers(base.model)
    depth = layer if depth is None else depth
    if layers is None or not 0 < layer <= depth < len(layers):
        from pytest_emergent.models.hf.placement import outputs_on_device

        with outputs_on_device(base.model):  # every layer's states: only one row comes back
            out = base.model(input_ids=input_ids, use_cache=cache is not None,
                             output_hidden_states=True, logits_to_keep=1, **kw)
        return [float(v) for v in out.hidden_states[layer][0, -1].float().tolist()]
    seen: list[Any] = []

    def keep(_module: Any, _args: Any, output: Any) -> None:
        seen.append(output[0] if isinstance(output, tuple) else output)

    def stop(_module: Any, _args: Any, _output: Any) -> None:
        raise _Reached

    handles = [layers[layer - 1].register_forward_hook(keep),
               layers[depth - 1].register_forward_hook(stop)]
    try:
        base.model(input_ids=input_ids, use_cache=cache is not None, logits_to_keep=1, **kw)
    except _Reached:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if not seen:
        raise BackendError(f"{base.spec}: decoder layer {layer - 1} never ran")
    return [float(v) for v in seen[0][0, -1].float().tolist()]


def hidden_at_end(base: Any, text: str, layer: int) -> list[float]:
    """Hidden state of `layer` at the last token of already-templated `text`."""
    import torch

    with torch.inference_mode():
        return _hidden_state(base, torch.tensor([base.encode(text)]), None, layer)


class ProbeBackend:
    """A judge-only backend: `candidate_probs` answers ``("probe:METRIC",)`` requests with
    {"0": P, "100": 1 - P}, whose mean is the probe score. It cannot generate."""

    is_local = True

    def __init__(self, base: Any, heads: Heads, *, spec: str) -> None:
        self.base = base
        self.heads = heads
        self.spec = spec
        self.fingerprint = fitted_fingerprint("probe", base.fingerprint, heads.digest)
        #: the fingerprint this judge has with its base's weights in float32
        self.weights_fingerprint = fitted_fingerprint("probe", weights_fingerprint(base),
                                                      heads.digest)

    def generate(self, requests: Sequence[SampleRequest]) -> list[str]:
        raise BackendError(f"{self.spec}: a probe judge scores answers; it cannot generate")

    def candidate_probs(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        """One probe reading per request. Prompts are run sorted, and each reuses the key/value
        cache of the previous one up to their common token prefix (the judge template), as
        the logprob judge does; the cache lives for this call only."""
        import torch
        from transformers import DynamicCache

        from pytest_emergent.models.hf.trie import common_prefix, crop_to

        heads = []
        for request in requests:
            (candidate,) = request.candidates or ("",)
            head = self.heads.heads.get(candidate.removeprefix(_CANDIDATE))
            if not candidate.startswith(_CANDIDATE) or head is None:
                raise BackendError(f"{self.spec}: no probe head for {candidate!r}")
            heads.append(head)
        texts = [self.base.render_prompt(r.messages) + r.assistant_prefix for r in requests]
        out: dict[int, CandidateProbs] = {}
        model, cache = self.base.model, None
        previous: list[int] = []
        depth = max((head.layer for head in heads), default=0)
        with torch.inference_mode():
            for i in sorted(range(len(requests)), key=lambda k: (texts[k], k)):
                ids = self.base.encode(texts[i])
                past = min(common_prefix(previous, ids), len(ids) - 1)
                if cache is None or past <= 0:
                    past, cache = 0, DynamicCache(config=model.config)
                else:
                    crop_to(cache, past)
                hidden = _hidden_state(self.base, torch.tensor([ids[past:]]), cache,
                                       heads[i].layer, depth)
                previous = ids
                p = heads[i].probability(hidden)
                out[i] = CandidateProbs(probs={"0": p, "100": 1.0 - p}, exact=True, top={})
        return [out[i] for i in range(len(requests))]

    def close(self) -> None:
        self.base.close()


class ProbeJudge(Judge):
    """`Judge` over a `ProbeBackend` (possibly behind the cache): one probe request per task."""

    def __init__(self, backend: Any, *, metrics: Sequence[str] = ("aligned", "coherent"),
                 min_mass: float = 0.25) -> None:
        super().__init__(backend, min_mass=min_mass, assistant_prefix=PREFIX)
        self.metrics = tuple(metrics)

    def request(self, task: JudgeTask) -> ScoreRequest:
        return ScoreRequest(messages=(("user", task.prompt),),
                            candidates=(f"{_CANDIDATE}{task.metric}",),
                            assistant_prefix=self.assistant_prefix)

    def score(self, tasks: Sequence[JudgeTask]) -> list[JudgeScore]:
        """Numeric tasks of metrics with heads go to the probe; others are unscored."""
        ok = [i for i, t in enumerate(tasks) if t.kind == "numeric" and t.metric in self.metrics]
        scored = dict(zip(ok, super().score([tasks[i] for i in ok]), strict=True))
        return [scored.get(i) or JudgeScore(
            metric=t.metric, score=None, label=None, mass=0.0,
            unscored_reason=f"error: the probe judge has no head for {t.kind} metric "
                            f"{t.metric!r}") for i, t in enumerate(tasks)]


def is_probe_spec(spec: str) -> bool:
    return spec.strip().startswith(_CANDIDATE)


def resolve_probe(target: str, base: Any, cache_dir: Path | None) -> ProbeBackend:
    """`probe:TARGET`: the heads fitted for `base` (the model TARGET names)."""
    search = ([cache_dir.parent / "probes"] if cache_dir is not None else []) + [SHIPPED_DIR]
    # heads fitted in float32 serve the same weights in any precision (the backend's own
    # fingerprint, which names the precision, keys its judgments in the cache)
    weights = weights_fingerprint(base)
    return ProbeBackend(base, find_heads(weights, search), spec=f"probe:{target}")
