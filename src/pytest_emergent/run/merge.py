"""Merging xdist workers' results into one run, as one process would have computed it.

A worker sends its per-question *records* (not summaries), the file aggregates it ran, its
calibrations and its backends' names and cache counts, as one JSON-ready payload
(`worker_payload`). The controller's `Merger` rebuilds each `QuestionResult` from the records
with `run.outcome.result_from_records` (the path `evaluate` takes), pools the file aggregates,
restores the single-process order and puts stand-ins for the workers' backends in the run, so
the report and the cache line read as without xdist. No pytest here: `plugin/xdist.py` moves
the payloads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_emergent.errors import EmergentError
from pytest_emergent.models.base import (
    Backend,
    CandidateProbs,
    CountsCache,
    SampleRequest,
    ScoreRequest,
)
from pytest_emergent.run.outcome import (
    against_baseline,
    aggregate,
    aggregate_against_baseline,
    result_from_records,
)
from pytest_emergent.run.records import EvalOptions, QuestionResult, SampleRecord
from pytest_emergent.run.session import EvalRun, FileResult
from pytest_emergent.spec import Question, QuestionFile, load_file

#: bumped when the payload changes shape
PAYLOAD_FORMAT = 3

Key = tuple[str, str]  # (source file, question id), as in `EvalRun.results`


def backend_info(backend: Backend | None) -> dict[str, Any] | None:
    if backend is None:
        return None
    counted = backend if isinstance(backend, CountsCache) else None
    return {
        "spec": backend.spec,
        "fingerprint": backend.fingerprint,
        "is_local": backend.is_local,
        "hits": None if counted is None else counted.hits,
        "misses": None if counted is None else counted.misses,
    }


def worker_payload(run: EvalRun, *, order: Sequence[Sequence[str]], ran: Sequence[Key]
                   ) -> dict[str, Any]:
    """What a worker sends: its records and aggregates, all JSON-ready."""
    return {
        "format": PAYLOAD_FORMAT,
        "order": [list(entry) for entry in order],
        "ran": [list(key) for key in ran],
        "results": [
            {
                "file": src,
                "id": qid,
                "records": [record.to_dict() for record in res.records],
                "samples_saved": res.samples_saved,
                "early_stop": res.early_stop,
                "baseline": _baseline_entry(run, (src, qid), res),
            }
            for (src, qid), res in run.results.items()
        ],
        "files": [{"file": path, "questions": list(f.question_ids)}
                  for path, f in run.file_results.items()],
        "calibrations": [{"file": path, "report": report if isinstance(report, dict)
                          else report.to_dict()} for path, report in run.calibrations],
        "seconds": run.seconds,
        "error": None if run.error is None else f"{type(run.error).__name__}: {run.error}",
        "model": backend_info(run.model_backend),
        "judge": backend_info(run.judge_backend),
        "shared_backend": run.model_backend is not None
        and run.model_backend is run.judge_backend,
    }


def _baseline_entry(run: EvalRun, key: Key, res: QuestionResult) -> dict[str, Any] | None:
    """The baseline model's records for a question gated against one (`--em-baseline`)."""
    base = run.baseline_results.get(key)
    if res.baseline is None or base is None:
        return None
    return {"spec": res.baseline.baseline, "records": [r.to_dict() for r in base.records]}


class RemoteBackend:
    """Stands in on the controller for a backend that ran on the workers: it carries the spec
    and fingerprint the report shows, and refuses work."""

    def __init__(self, spec: str, fingerprint: str, is_local: bool) -> None:
        self.spec = spec
        self.fingerprint = fingerprint
        self.is_local = is_local

    def generate(self, requests: Sequence[SampleRequest]) -> list[str]:
        raise EmergentError(f"{self.spec} ran on the xdist workers, not on the controller")

    def candidate_probs(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        raise EmergentError(f"{self.spec} ran on the xdist workers, not on the controller")

    def close(self) -> None:
        return None


class CountedRemoteBackend(RemoteBackend):
    """A remote backend whose workers counted cache hits: the sums, for the cache line."""

    def __init__(self, spec: str, fingerprint: str, is_local: bool, *, hits: int,
                 misses: int) -> None:
        super().__init__(spec, fingerprint, is_local)
        self.hits = hits
        self.misses = misses


def _stand_in(info: Mapping[str, Any], hits: int, misses: int) -> Backend:
    spec, fingerprint, local = str(info["spec"]), str(info["fingerprint"]), bool(info["is_local"])
    if info.get("hits") is None:
        return RemoteBackend(spec, fingerprint, local)
    return CountedRemoteBackend(spec, fingerprint, local, hits=hits, misses=misses)


@dataclass
class _Stored:
    records: list[dict[str, Any]]
    samples_saved: int
    early_stop: str | None
    owned: bool  # sent by the worker that ran the question's item
    #: the baseline model's spec and records, when the question gates against one
    baseline: dict[str, Any] | None = None


@dataclass
class Merger:
    """Collects worker payloads; `apply` fills an `EvalRun` as one process would have."""

    options: EvalOptions
    #: loads a question file as the session collected it (`RunSettings.load_questions`)
    load: Callable[[Path], QuestionFile] = load_file
    order: list[list[str]] = field(default_factory=list)
    stored: dict[Key, _Stored] = field(default_factory=dict)
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    calibrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    _qfiles: dict[str, QuestionFile] = field(default_factory=dict)

    def add(self, payload: Mapping[str, Any], *, worker: str = "worker") -> None:
        if payload.get("format") != PAYLOAD_FORMAT:
            raise EmergentError(
                f"xdist worker {worker} sent results in format {payload.get('format')!r}; "
                f"expected {PAYLOAD_FORMAT} (mixed pytest-emergent versions?)"
            )
        self.payloads.append(dict(payload))
        if not self.order:
            self.order = [list(entry) for entry in payload["order"]]
        ran = {(str(src), str(qid)) for src, qid in payload["ran"]}
        for entry in payload["results"]:
            key = (str(entry["file"]), str(entry["id"]))
            owned = key in ran
            old = self.stored.get(key)
            # the run of the question's own item wins over an evaluation for an aggregate;
            # with seeded backends both are the same answers anyway
            if old is None or (owned and not old.owned):
                self.stored[key] = _Stored(list(entry["records"]), int(entry["samples_saved"]),
                                           entry.get("early_stop"), owned,
                                           entry.get("baseline"))
        for entry in payload["files"]:
            self.files.setdefault(str(entry["file"]), tuple(entry["questions"]))
        for entry in payload.get("calibrations") or []:
            self.calibrations[str(entry["file"])] = dict(entry["report"])
        if payload.get("error"):
            self.errors.append(f"{worker}: {payload['error']}")

    def _qfile(self, path: str) -> QuestionFile:
        if path not in self._qfiles:
            self._qfiles[path] = self.load(Path(path))
        return self._qfiles[path]

    def _question(self, key: Key) -> Question:
        for q in self._qfile(key[0]).questions:
            if q.id == key[1]:
                return q
        raise EmergentError(f"{key[0]}: question {key[1]!r} reported by a worker is not in the "
                            "file any more")

    def ordered_keys(self) -> list[Key]:
        """Single-process order: the selection in collection order, then the questions that
        only an aggregate needed, file by file in the files' order."""
        keys: list[Key] = [(e[1], e[2]) for e in self.order if e[0] == "q"]
        keys = [k for k in keys if k in self.stored]
        seen = set(keys)
        paths = [e[1] for e in self.order if e[0] == "agg"]
        paths += sorted({src for src, _ in self.stored} - set(paths))
        for path in paths:
            for q in self._qfile(path).questions:
                key = (path, q.id)
                if key in self.stored and key not in seen:
                    keys.append(key)
                    seen.add(key)
        return keys

    def apply(self, run: EvalRun) -> None:
        """Replace the run's results with the merged ones (call after each `add`)."""
        results: dict[Key, QuestionResult] = {}
        bases: dict[Key, tuple[str, QuestionResult]] = {}
        for key in self.ordered_keys():
            s = self.stored[key]
            question = self._question(key)
            records = [SampleRecord.from_dict(r) for r in s.records]
            results[key] = result_from_records(question, records, self.options,
                                              samples_saved=s.samples_saved,
                                              early_stop=s.early_stop)
            if s.baseline is not None:
                spec = str(s.baseline["spec"])
                base = result_from_records(
                    question, [SampleRecord.from_dict(r) for r in s.baseline["records"]],
                    self.options)
                bases[key] = (spec, base)
                results[key] = against_baseline(results[key], base, self.options, spec)
        file_results: dict[str, FileResult] = {}
        agg_paths = [e[1] for e in self.order if e[0] == "agg"]
        for path in [p for p in agg_paths if p in self.files]:
            keys = [(path, qid) for qid in self.files[path]]
            chosen = [results[k] for k in keys if k in results]
            if len(chosen) < len(keys):
                continue  # a worker lost results; its aggregate item already reported that
            file_results[path] = self._file_result(path, keys, chosen, bases)
        run.results = results
        run.baseline_results = {key: base for key, (_spec, base) in bases.items()}
        run.file_results = file_results
        # calibrations in collection order, as one process would have run them
        cal_paths = [e[1] for e in self.order if e[0] == "cal"]
        run.calibrations = [(p, self.calibrations[p]) for p in cal_paths
                            if p in self.calibrations]
        run.seconds = sum(float(p.get("seconds") or 0.0) for p in self.payloads)
        if self.errors:
            run.error = EmergentError("; ".join(self.errors))
        self._set_backends(run)

    def _file_result(self, path: str, keys: list[Key], chosen: list[QuestionResult],
                     bases: Mapping[Key, tuple[str, QuestionResult]]) -> FileResult:
        thresholds = self._qfile(path).thresholds
        if all(k in bases for k in keys):
            spec = bases[keys[0]][0]
            summary, merged, decision, cmp = aggregate_against_baseline(
                chosen, [bases[k][1] for k in keys], thresholds, self.options, spec)
            return FileResult(path, summary, merged, decision, self.files[path], cmp)
        summary, merged, decision = aggregate(chosen, thresholds, self.options)
        return FileResult(path, summary, merged, decision, self.files[path])

    def _set_backends(self, run: EvalRun) -> None:
        infos = [p for p in self.payloads if p.get("model")]
        if not infos:
            return

        def total(role: str, field_name: str) -> int:
            return sum(int((p.get(role) or {}).get(field_name) or 0) for p in infos)

        model = _stand_in(infos[0]["model"], total("model", "hits"), total("model", "misses"))
        if infos[0].get("shared_backend"):
            run.model_backend = run.judge_backend = model
            return
        run.model_backend = model
        judges = [p for p in infos if p.get("judge")]
        if judges:
            run.judge_backend = _stand_in(judges[0]["judge"], total("judge", "hits"),
                                          total("judge", "misses"))
