"""A backend wrapper that ablates or adds a direction in the residual stream at inference.

    from pytest_emergent.mitigations import SteeredBackend
    ablated = SteeredBackend(model, direction, mode="ablate")
    steered = SteeredBackend(base, direction.at([12]), mode="add", scale=4.0)
    run_questions(questions, ablated)

It implements the `Backend` protocol: `generate` and `candidate_probs` run the wrapped local
backend with the hooks registered, and remove them afterwards, so the wrapped model is
unchanged between calls. Its fingerprint combines the wrapped model's with the direction's
content hash, mode, scale and layers, so cached answers of the plain model are never reused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from pytest_emergent.errors import EmergentError
from pytest_emergent.mitigations.directions import Direction
from pytest_emergent.mitigations.hooks import MODES, edited_residual
from pytest_emergent.models.base import CandidateProbs, SampleRequest, ScoreRequest


class SteeredBackend:
    """`backend` with `direction` ablated (`mode="ablate"`) or added (`mode="add"`, times
    `scale`) at the output of each of `layers` (default: every layer of the direction).

    `backend` must be local (an `HFBackend` or a fine-tuned handle). `close()` does not
    close the wrapped backend, which the caller still owns.
    """

    is_local = True

    def __init__(
        self,
        backend: Any,
        direction: Direction,
        *,
        mode: str = "ablate",
        scale: float = 1.0,
        layers: Iterable[int] | None = None,
    ) -> None:
        if mode not in MODES:
            raise EmergentError(f"unknown steering mode {mode!r}; choose one of: "
                                f"{', '.join(MODES)}")
        if getattr(backend, "model", None) is None:
            raise EmergentError(
                f"model {getattr(backend, 'spec', backend)!r}: steering needs a loaded local "
                "transformers backend"
            )
        self.backend = backend
        self.direction = direction if layers is None else direction.at(layers)
        self.mode = mode
        self.scale = float(scale)
        label = f"{mode}" + (f"x{self.scale:g}" if mode == "add" else "")
        self.spec = f"{backend.spec}+{label}[{self.direction.digest[:8]}]"
        key = (f"{backend.fingerprint}|{mode}|{self.scale!r}|{self.direction.layers}|"
               f"{self.direction.digest}")
        self.fingerprint = hashlib.sha256(key.encode()).hexdigest()

    @property
    def model(self) -> Any:
        return self.backend.model

    @property
    def tokenizer(self) -> Any:
        return self.backend.tokenizer

    def _hooks(self) -> Any:
        return edited_residual(self.backend.model, self.direction.vectors, mode=self.mode,
                               scale=self.scale)

    def generate(self, requests: Sequence[SampleRequest]) -> list[str]:
        with self._hooks():
            return list(self.backend.generate(requests))

    def candidate_probs(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        with self._hooks():
            return list(self.backend.candidate_probs(requests))

    def render_prompt(self, messages: Any) -> str:
        return str(self.backend.render_prompt(messages))

    def encode(self, text: str) -> list[int]:
        return list(self.backend.encode(text))

    def close(self) -> None:
        """Nothing to release: the wrapped backend belongs to the caller."""

    def __repr__(self) -> str:
        return f"SteeredBackend({self.spec!r})"
