"""What a fine-tuning job leaves: the result on disk (`FinetuneResult`), the loaded model
(`FineTuned`, a `Backend` with its provenance) and the checkpoints saved with `save_every`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_emergent.models.base import Backend, CandidateProbs, SampleRequest, ScoreRequest

__all__ = ["CHECKPOINT_PREFIX", "FineTuned", "FinetuneResult", "checkpoint_steps"]


@dataclass
class FinetuneResult:
    """A trained (or cached) result on disk, not loaded."""

    path: Path
    key: str
    #: True when this call trained; False when the result came from the cache
    trained: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_adapter(self) -> bool:
        return (self.path / "adapter_config.json").is_file()

    @property
    def checkpoints(self) -> list[Path]:
        """The `checkpoint-STEP` directories saved with `save_every`, by step (0 first)."""
        return [self.path / f"{CHECKPOINT_PREFIX}{s}" for s in checkpoint_steps(self.path)]


#: checkpoints saved with `save_every` are `checkpoint-STEP` directories inside the result
CHECKPOINT_PREFIX = "checkpoint-"


def checkpoint_steps(path: Path) -> list[int]:
    """The steps of the `checkpoint-STEP` directories in `path`, ascending."""
    steps = []
    for child in path.glob(f"{CHECKPOINT_PREFIX}*"):
        tail = child.name[len(CHECKPOINT_PREFIX):]
        if child.is_dir() and tail.isdigit():
            steps.append(int(tail))
    return sorted(steps)


class FineTuned:
    """A loaded fine-tuned model: a `Backend` (pass it as `model=`) plus its provenance.

    `path` is the adapter directory (or checkpoint, for full fine-tuning), `key` its cache
    key, `trained` whether this call trained it, `metadata` the recorded run (config, losses,
    held-out loss, timings). Other attributes (`model`, `tokenizer`, ...) are the backend's.
    """

    def __init__(self, backend: Backend, result: FinetuneResult) -> None:
        self.backend = backend
        self.result = result
        self.spec: str = backend.spec
        self.fingerprint: str = backend.fingerprint
        self.is_local: bool = backend.is_local

    @property
    def path(self) -> Path:
        return self.result.path

    @property
    def key(self) -> str:
        return self.result.key

    @property
    def trained(self) -> bool:
        return self.result.trained

    @property
    def metadata(self) -> dict[str, Any]:
        return self.result.metadata

    @property
    def checkpoints(self) -> list[Path]:
        """Saved `checkpoint-STEP` directories (fine-tunes with `save_every`), by step; each
        is usable as `--model` (several at once make a checkpoint sweep)."""
        return self.result.checkpoints

    def reused(self) -> FineTuned:
        """The same loaded model, marked as not trained by this call (an in-session hit)."""
        again = FinetuneResult(self.result.path, self.result.key, False, self.result.metadata)
        return FineTuned(self.backend, again)

    def generate(self, requests: Sequence[SampleRequest]) -> list[str]:
        return self.backend.generate(requests)

    def candidate_probs(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        return self.backend.candidate_probs(requests)

    def close(self) -> None:
        self.backend.close()

    def __getattr__(self, name: str) -> Any:
        if name in ("backend", "result"):  # not yet set: avoid recursion during init
            raise AttributeError(name)
        return getattr(self.backend, name)

    def __repr__(self) -> str:
        state = "trained now" if self.trained else "from cache"
        return f"FineTuned({str(self.path)!r}, {state})"
