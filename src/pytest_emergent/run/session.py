"""One evaluation per test session: loads backends once, evaluates every selected question
together on first use, keeps the results for the items, the summary and the report.

Plain Python: the pytest layer (plugin/hooks.py, plugin/items.py) only calls into this.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_emergent.errors import EmergentError
from pytest_emergent.judging.judge import Judge
from pytest_emergent.models.base import Backend, CountsCache, weights_fingerprint
from pytest_emergent.models.cache import CachedBackend, Store
from pytest_emergent.run.evaluate import evaluate
from pytest_emergent.run.outcome import against_baseline, aggregate, aggregate_against_baseline
from pytest_emergent.run.records import EvalOptions, QuestionResult
from pytest_emergent.run.settings import RunSettings
from pytest_emergent.spec import Question, QuestionFile, Thresholds
from pytest_emergent.stats import BaselineComparison, GateDecision, RateSummary


@dataclass
class FileResult:
    """The per-file aggregate gate."""

    path: str
    summary: RateSummary
    thresholds: Thresholds
    decision: GateDecision
    question_ids: tuple[str, ...]
    #: the pooled comparison with the baseline model (`--em-baseline`), else None
    baseline: BaselineComparison | None = None


@dataclass
class EvalRun:
    """Session state: settings, lazily resolved backends and results."""

    settings: RunSettings
    say: Callable[[str], None] = lambda _msg: None
    files: dict[str, QuestionFile] = field(default_factory=dict)
    selected: list[Question] = field(default_factory=list)
    results: dict[tuple[str, str], QuestionResult] = field(default_factory=dict)
    file_results: dict[str, FileResult] = field(default_factory=dict)
    model_backend: Backend | None = None
    judge_backend: Backend | None = None
    #: the baseline models (`--em-baseline`, or a file's `baseline:`) by spec, and their
    #: results, keyed as `results`
    baseline_backends: dict[str, Backend] = field(default_factory=dict)
    baseline_results: dict[tuple[str, str], QuestionResult] = field(default_factory=dict)
    error: BaseException | None = None
    seconds: float = 0.0
    #: judge calibrations run this session (`--em-calibrate-judge`): (question file, report
    #: or, merged from xdist workers, its `to_dict()`)
    calibrations: list[tuple[str, Any]] = field(default_factory=list)
    #: the questions evaluated together with the ones an item needs; None means the whole
    #: selection in one batch. An xdist worker narrows it to its own queue (plugin/xdist.py).
    batch: Callable[[], Sequence[Question]] | None = None

    @property
    def options(self) -> EvalOptions:
        return self.settings.options()

    store_path: Path | None = None
    _store: Store | None = None
    #: damaged rows the store found, kept when it closes
    _damaged: int = 0
    #: the model under test was closed after its answers were in (a checkpoint sweep keeps
    #: one model loaded at a time); it loads again if asked for
    released: bool = False

    def _resolve(self, spec: str, *, role: str, allow_pickle: bool | None = None) -> Backend:
        from pytest_emergent.judging.specs import resolve_judge
        from pytest_emergent.models.registry import resolve

        cache_root = self.settings.cache_dir
        backend = (resolve_judge if role == "judge" else resolve)(
            spec,
            base_model=self.settings.base_model if role == "model" else None,
            cache_dir=cache_root / "models" if cache_root is not None else None,
            allow_pickle=self.settings.allow_pickle if allow_pickle is None else allow_pickle,
            batch_size=self.settings.batch_size,
            # --judge-base-url points the judge (only) at an OpenAI-compatible server
            base_url=self.settings.judge_base_url if role == "judge" else None,
            dtype=self.settings.dtype if role != "judge" else self.settings.judge_dtype,
            device=self.settings.device,
        )
        if not self.settings.use_cache or self.store_path is None:
            if self.settings.rejudge:
                raise EmergentError("--em-rejudge reads stored answers: it needs the cache")
            return backend
        if self._store is None:
            self._store = Store(self.store_path)
        return CachedBackend(
            lambda: backend,
            self._store,
            spec=backend.spec,
            fingerprint=backend.fingerprint,
            weights_fingerprint=weights_fingerprint(backend),
            is_local=backend.is_local,
            chunk_size=max(self.settings.batch_size, 8),
            rejudge=self.settings.rejudge and role in ("model", "baseline"),
            on_chunk=lambda kind, done, total: self.say(f"{spec}: {kind}s {done}/{total}"),
        )

    def backends(self) -> tuple[Backend, Backend]:
        """The model and judge backends, resolved once (the same object when specs match)."""
        if self.model_backend is None or self.released:
            self.say(f"loading model {self.settings.model}")
            self.model_backend = self._resolve(self.settings.model, role="model")
            self.released = False
        if self.judge_backend is None:
            from pytest_emergent.models.registry import is_local_spec

            same = (
                self.settings.judge == self.settings.model
                and not self.settings.base_model
                and not self.settings.judge_base_url
                # a local judge may run in another precision than the model under test
                and (self.settings.dtype == self.settings.judge_dtype
                     or not is_local_spec(self.settings.model))
            )
            if same and not self.settings.rejudge:
                self.judge_backend = self.model_backend
            else:
                self.say(f"loading judge {self.settings.judge}")
                self.judge_backend = self._resolve(self.settings.judge, role="judge")
        return self.model_backend, self.judge_backend

    def judge_only(self) -> Judge:
        """The session's judge, without loading the model under test (calibration)."""
        if self.judge_backend is None:
            self.say(f"loading judge {self.settings.judge}")
            self.judge_backend = self._resolve(self.settings.judge, role="judge")
        return self.make_judge(self.judge_backend)

    def calibration_root(self) -> Path:
        """Where measured judge agreement is stored (see `calibrate.known_agreement`)."""
        from pytest_emergent.judging.calibrate import cache_root

        return cache_root(self.settings.cache_dir)

    def judge_warning(self) -> str | None:
        """A summary line when the active judge's measured agreement is weak."""
        if self.judge_backend is None:
            return None
        from pytest_emergent.judging.calibrate import agreement_warning

        judge = self.make_judge(self.judge_backend)
        return agreement_warning(judge.fingerprint, judge.spec, self.calibration_root(),
                                 judge.weights_fingerprint)

    def make_judge(self, backend: Backend) -> Judge:
        from pytest_emergent.judging.specs import judge_for_spec

        return judge_for_spec(self.settings.judge, backend,
                              min_mass=self.settings.judge_min_mass,
                              assistant_prefix=self.settings.judge_prefix)

    def ensure(self, needed: Sequence[Question]) -> None:
        """Evaluate the batch (by default every selected question) and `needed` once; re-raise
        a stored failure."""
        if self.error is not None:
            # a fresh exception per item: re-raising the stored one would grow its traceback
            raise EmergentError(
                f"evaluation failed earlier in this session: "
                f"{type(self.error).__name__}: {self.error}"
            ) from None
        batch = self.selected if self.batch is None else self.batch()
        todo = {(str(q.source), q.id): q for q in [*batch, *needed]}
        missing = [q for key, q in todo.items() if key not in self.results]
        if not missing:
            return
        start = time.perf_counter()
        try:
            model, judge_backend = self.backends()
            judge = self.make_judge(judge_backend)
            found = evaluate(missing, model, judge, self.options, progress=self.say)
            by_spec: dict[str, list[Question]] = {}
            for q in missing:
                spec = self.baseline_spec(q)
                if spec is not None:
                    by_spec.setdefault(spec, []).append(q)
            for spec, questions in by_spec.items():
                base = evaluate(questions, self._baseline_backend(spec), judge, self.options,
                                progress=self._prefixed(f"baseline {spec}: "))
                self.baseline_results.update(base)
                found.update({key: against_baseline(found[key], res, self.options, spec)
                              for key, res in base.items()})
            self.results.update(found)
        except BaseException as exc:
            # remember the cause so every item reports it, instead of re-running the model
            self.error = exc
            raise
        finally:
            self.seconds += time.perf_counter() - start

    def _prefixed(self, prefix: str) -> Callable[[str], None]:
        return lambda message: self.say(prefix + message)

    def baseline_spec(self, question: Question) -> str | None:
        """The baseline a question gates against: --em-baseline, else its file's `baseline:`."""
        return self.settings.baseline or question.baseline

    def _baseline_backend(self, spec: str) -> Backend:
        if spec not in self.baseline_backends:
            self.say(f"loading baseline model {spec}")
            # a baseline a question file names never loads pickle weights
            from_file = spec != self.settings.baseline
            self.baseline_backends[spec] = self._resolve(
                spec, role="baseline", allow_pickle=False if from_file else None)
        return self.baseline_backends[spec]

    def result(self, question: Question) -> QuestionResult:
        self.ensure([question])
        return self.results[(str(question.source), question.id)]

    def file_result(self, qfile: QuestionFile) -> FileResult:
        """Aggregate the selected questions of a file (all of them if none was selected)."""
        key = str(qfile.path)
        if key in self.file_results:
            return self.file_results[key]
        chosen = [q for q in self.selected if str(q.source) == key] or list(qfile.questions)
        self.ensure(chosen)
        results = [self.results[(key, q.id)] for q in chosen]
        ids = tuple(q.id for q in chosen)
        spec = self.settings.baseline or qfile.baseline
        if spec is not None:
            bases = [self.baseline_results[(key, q.id)] for q in chosen]
            summary, thresholds, decision, cmp = aggregate_against_baseline(
                results, bases, qfile.thresholds, self.options, spec)
            out = FileResult(key, summary, thresholds, decision, ids, cmp)
        else:
            summary, thresholds, decision = aggregate(results, qfile.thresholds, self.options)
            out = FileResult(key, summary, thresholds, decision, ids)
        self.file_results[key] = out
        return out

    def release_model(self) -> None:
        """Free the model under test (not a judge it doubles as); its fingerprint stays
        readable for the report."""
        if self.model_backend is not None and self.model_backend is not self.judge_backend:
            self.model_backend.close()
            self.released = True

    def close(self) -> None:
        backends = (self.model_backend, self.judge_backend, *self.baseline_backends.values())
        for backend in {id(b): b for b in backends if b}.values():
            backend.close()
        if self._store is not None:
            self._damaged = self._store.corrupted  # the terminal summary comes after this
            self._store.close()
            self._store = None

    def cache_line(self) -> str | None:
        """`cache: 40 answers stored, 8 generated; ...` for the terminal summary."""
        parts: list[str] = []
        for name, backend in (("answers", self.model_backend), ("judgments", self.judge_backend)):
            if isinstance(backend, CountsCache):
                parts.append(f"{name}: {backend.hits} from cache, {backend.misses} computed")
        if not parts:
            return None
        shared = self.model_backend
        if shared is self.judge_backend and isinstance(shared, CountsCache):
            parts = [f"answers and judgments: {shared.hits} from cache, "
                     f"{shared.misses} computed"]
        damaged = self._store.corrupted if self._store is not None else self._damaged
        if damaged:
            parts.append(f"{damaged} damaged cache entries recomputed")
        return f"cache {self.store_path}: " + "; ".join(parts)

