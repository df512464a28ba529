"""A checkpoint sweep's session: one `EvalRun` per model under test, sharing the judge, the
baseline models and the cache, with one model loaded at a time.

Each model evaluates the whole selection the first time one of its items asks; once its
answers are in, the monitor (if any) reads their activations and the model is freed before
the next one loads. No pytest here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pytest_emergent.models.base import Backend
from pytest_emergent.run.monitor import Monitor, build_monitor, projection
from pytest_emergent.run.records import QuestionResult
from pytest_emergent.run.session import EvalRun, FileResult
from pytest_emergent.run.settings import RunSettings
from pytest_emergent.run.sweep import SweepEntry, SweepPoint, sweep_points, transition
from pytest_emergent.spec import Question, QuestionFile

__all__ = ["SweepRun"]


def _prefixed(say: Callable[[str], None], label: str) -> Callable[[str], None]:
    return lambda message: say(f"{label}: {message}")


@dataclass
class SweepRun:
    """The runs of a sweep by label, in the user's (or the steps') order."""

    entries: list[SweepEntry]
    runs: dict[str, EvalRun]
    #: `--em-monitor`: where the direction comes from, and at which layer (None: middle)
    monitor_source: str | None = None
    monitor_layer: int | None = None
    monitor: Monitor | None = None
    projections: dict[str, float | None] = field(default_factory=dict)
    #: why the monitor could not run, if it could not (shown in the summary)
    monitor_error: str | None = None
    _settled: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, settings: RunSettings, entries: Sequence[SweepEntry], *,
               say: Callable[[str], None], store_path: Path | None,
               monitor: str | None = None, monitor_layer: int | None = None) -> SweepRun:
        shared: dict[str, Backend] = {}  # baseline models, loaded once for every checkpoint
        runs: dict[str, EvalRun] = {}
        for entry in entries:
            run = EvalRun(replace(settings, model=entry.spec), say=_prefixed(say, entry.label))
            run.store_path = store_path
            run.baseline_backends = shared
            runs[entry.label] = run
        return cls(list(entries), runs, monitor, monitor_layer)

    @property
    def first(self) -> EvalRun:
        return self.runs[self.entries[0].label]

    def run_for(self, label: str) -> EvalRun:
        """The label's run, handed the judge another run already loaded."""
        run = self.runs[label]
        if run.judge_backend is None:
            for other in self.runs.values():
                judge = other.judge_backend
                if judge is not None and judge is not other.model_backend:
                    run.judge_backend = judge
                    break
        return run

    def result(self, label: str, question: Question) -> QuestionResult:
        run = self.run_for(label)
        found = run.result(question)
        self._settle(label, run)
        return found

    def file_result(self, label: str, qfile: QuestionFile) -> FileResult:
        run = self.run_for(label)
        found = run.file_result(qfile)
        self._settle(label, run)
        return found

    def _settle(self, label: str, run: EvalRun) -> None:
        """Once every selected question of `run` has its result: project, then free."""
        if label in self._settled:
            return
        if any((str(q.source), q.id) not in run.results for q in run.selected):
            return
        self._settled.add(label)
        try:
            if self.monitor_source is not None and self.monitor_error is None:
                self.projections[label] = self._project(run)
        finally:
            run.release_model()

    def _project(self, run: EvalRun) -> float | None:
        from pytest_emergent.errors import EmergentError

        try:
            if self.monitor is None:
                ref = self.first
                was_released = ref.released or ref.model_backend is None
                assert self.monitor_source is not None
                ref.say(f"monitor: direction from {self.monitor_source}")
                self.monitor = build_monitor(ref.backends()[0], self.monitor_source,
                                             self.monitor_layer)
                if was_released and ref is not run:
                    ref.release_model()
            records = [rec for res in run.results.values() for rec in res.records]
            return projection(run.backends()[0], self.monitor, records)
        except EmergentError as exc:
            self.monitor_error = str(exc)
            raise

    def points(self) -> list[SweepPoint]:
        """Each evaluated model's pooled rate and projection, in sweep order."""
        results = {label: list(run.results.values()) for label, run in self.runs.items()}
        return sweep_points(self.entries, results, self.first.options,
                            {k: v for k, v in self.projections.items() if v is not None})

    def transition(self) -> SweepPoint | None:
        return transition(self.points())

    def close(self) -> None:
        """Close every backend once (the judge and baselines are shared), then each store."""
        backends: dict[int, Backend] = {}
        for run in self.runs.values():
            for backend in (run.model_backend, run.judge_backend,
                            *run.baseline_backends.values()):
                if backend is not None:
                    backends[id(backend)] = backend
            run.model_backend = run.judge_backend = None
            run.baseline_backends = {}
        for backend in backends.values():
            backend.close()
        for run in self.runs.values():
            run.close()
