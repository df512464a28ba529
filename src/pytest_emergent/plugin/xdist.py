"""pytest-xdist support: workers evaluate their own items, the controller merges and reports.

Under ``-n N`` every worker collects every item but runs only the ones xdist hands it:

- A worker evaluates the questions of its queued items together on first use (instead of the
  whole selection), so each question is evaluated once across workers. The answers and
  judgments go through the shared SQLite cache (``cache.Store`` is safe across processes),
  and every answer's seed depends only on the base seed, the question, the paraphrase and the
  sample index, so a question's result does not depend on which worker evaluated it.
- A file's ``_aggregate`` item needs every (selected) question of its file. The worker that
  runs it evaluates the ones it lacks, reading what other workers already stored from the
  cache, so its verdict is the single-process verdict whatever the scheduling.
- At session end a worker puts its per-question *records* (not summaries) into
  ``config.workeroutput`` as one JSON string and writes no report. The controller receives
  them in ``pytest_testnodedown``, rebuilds each `QuestionResult` from the records with the
  same functions `evaluate` uses (categories, rates, intervals, gates), pools the file
  aggregates the workers ran, and restores the single-process order. Its `EvalRun` then
  writes the one summary.json, samples.jsonl and terminal table as without xdist.

- In calibration mode (``--em-calibrate-judge``) each ``_calibrate_judge`` item writes its
  own report files; its figures go to the controller in the same payload, so the terminal
  prints every file's calibration in collection order, as one process would.

junit properties need nothing here: items append them to ``item.user_properties`` and xdist
sends those with each report to the controller's junit writer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from pytest_emergent.errors import EmergentError
from pytest_emergent.judging.judge import JudgeScore
from pytest_emergent.models.base import (
    Backend,
    CandidateProbs,
    SampleRequest,
    ScoreRequest,
    as_messages,
)
from pytest_emergent.models.cache import CachedBackend, Store
from pytest_emergent.plugin.items import AGGREGATE_NAME, CALIBRATE_NAME, file_key, question_key
from pytest_emergent.run.outcome import aggregate, categorise, decide, summarise_question
from pytest_emergent.run.records import EvalOptions, QuestionResult, SampleRecord
from pytest_emergent.run.session import EvalRun, FileResult
from pytest_emergent.spec import Question, QuestionFile, load_file

#: the key of our entry in ``config.workeroutput``
OUTPUT_KEY = "emergent"
#: bumped when the payload changes shape
PAYLOAD_FORMAT = 2

Key = tuple[str, str]  # (source file, question id), as in `EvalRun.results`


def is_worker(config: pytest.Config) -> bool:
    """True in an xdist worker process."""
    return hasattr(config, "workerinput")


def register(config: pytest.Config, run: EvalRun) -> None:
    """Install the worker or controller side (called from `pytest_configure`)."""
    if is_worker(config):
        plugin: object = WorkerPlugin(config, run)
    else:
        plugin = ControllerPlugin(run)
    config.pluginmanager.register(plugin, "emergent-xdist")


# --- worker side -----------------------------------------------------------------------------


class WorkerPlugin:
    """On a worker: batch the worker's own queue, note what it ran, send the records."""

    def __init__(self, config: pytest.Config, run: EvalRun) -> None:
        self.config = config
        self.run = run
        self.session: pytest.Session | None = None
        self.order: list[list[str]] = []
        self.ran: list[Key] = []
        run.batch = self.upcoming

    def upcoming(self) -> list[Question]:
        """The questions of the items queued to this worker (empty if xdist's queue cannot be
        read: then each item's question is evaluated on its own, which is slower, not wrong)."""
        if self.session is None:
            return []
        items = self.session.items
        return [items[i].stash[question_key] for i in _queued_indices(self.config)
                if 0 <= i < len(items) and question_key in items[i].stash]

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # after deselection: every worker holds the same list (xdist checks it)
        self.session = session
        self.order = list(_order(session.items))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if question_key in item.stash:
            q = item.stash[question_key]
            self.ran.append((str(q.source), q.id))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        payload = worker_payload(self.run, order=self.order, ran=self.ran)
        session.config.workeroutput[OUTPUT_KEY] = json.dumps(payload)  # type: ignore[attr-defined]


def _queued_indices(config: pytest.Config) -> list[int]:
    """Indices into `session.items` that xdist has queued to this worker, next one first.

    Reads xdist's `WorkerInteractor` (``nextitem_index`` and the ``torun`` queue); these are
    not public API, so any surprise yields an empty list.
    """
    for plugin in config.pluginmanager.get_plugins():
        torun = getattr(plugin, "torun", None)
        if type(plugin).__name__ != "WorkerInteractor" or torun is None:
            continue
        try:
            with torun.lock() as queue:
                pending = [i for i in queue if isinstance(i, int)]
        except (AttributeError, TypeError):
            return []
        following = getattr(plugin, "nextitem_index", None)
        return ([following] if isinstance(following, int) else []) + pending
    return []


def _order(items: Iterable[pytest.Item]) -> Iterable[list[str]]:
    for item in items:
        if question_key in item.stash:
            q = item.stash[question_key]
            yield ["q", str(q.source), q.id]
        elif file_key in item.stash and item.name == AGGREGATE_NAME:
            yield ["agg", str(item.stash[file_key].path)]
        elif file_key in item.stash and item.name == CALIBRATE_NAME:
            yield ["cal", str(item.stash[file_key].path)]


def _backend_info(backend: Backend | None) -> dict[str, Any] | None:
    if backend is None:
        return None
    cached = isinstance(backend, CachedBackend)
    return {
        "spec": backend.spec,
        "fingerprint": backend.fingerprint,
        "is_local": backend.is_local,
        "hits": backend.hits if cached else None,  # type: ignore[attr-defined]
        "misses": backend.misses if cached else None,  # type: ignore[attr-defined]
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
            }
            for (src, qid), res in run.results.items()
        ],
        "files": [{"file": path, "questions": list(f.question_ids)}
                  for path, f in run.file_results.items()],
        "calibrations": [{"file": path, "report": report if isinstance(report, dict)
                          else report.to_dict()} for path, report in run.calibrations],
        "seconds": run.seconds,
        "error": None if run.error is None else f"{type(run.error).__name__}: {run.error}",
        "model": _backend_info(run.model_backend),
        "judge": _backend_info(run.judge_backend),
        "shared_backend": run.model_backend is not None
        and run.model_backend is run.judge_backend,
    }


# --- controller side -------------------------------------------------------------------------


class ControllerPlugin:
    """On the controller: merge every worker's payload into the session's `EvalRun`."""

    def __init__(self, run: EvalRun) -> None:
        self.run = run
        self.merger = Merger(run.options, samples=run.settings.samples)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", None) or {}
        text = output.get(OUTPUT_KEY)
        if text is None:  # a worker that crashed before sessionfinish sends nothing
            return
        worker = str(getattr(getattr(node, "gateway", None), "id", "worker"))
        self.merger.add(json.loads(text), worker=worker)
        self.merger.apply(self.run)


def record_from_dict(data: Mapping[str, Any]) -> SampleRecord:
    """Inverse of `SampleRecord.to_dict` (the category is recomputed by the caller)."""
    return SampleRecord(
        question_id=str(data["question_id"]),
        item_name=str(data["item"]),
        variant=str(data["variant"]),
        paraphrase_index=int(data["paraphrase_index"]),
        sample_index=int(data["sample_index"]),
        seed=int(data["seed"]),
        messages=as_messages(data["messages"]),
        answer=str(data["answer"]),
        scores={m: JudgeScore.from_dict(s) for m, s in dict(data["scores"]).items()},
        scorer_values={k: float(v) for k, v in dict(data.get("scorers") or {}).items()},
        category=str(data.get("category", "unscored")),
    )


def rebuild_result(question: Question, records: list[SampleRecord], options: EvalOptions, *,
                   samples_saved: int = 0, early_stop: str | None = None) -> QuestionResult:
    """A `QuestionResult` from its records, computed as `evaluate` computes it."""
    for record in records:
        record.category = categorise(question, record, options.definition)
    summary, labels = summarise_question(question, records, options)
    thresholds, decision = decide(question, summary, options)
    return QuestionResult(
        question=question, records=records, summary=summary, thresholds=thresholds,
        decision=decision, labels=labels, samples_saved=samples_saved, early_stop=early_stop,
    )


class _RemoteBackend:
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


def _stand_in(info: Mapping[str, Any], hits: int, misses: int) -> Backend:
    remote = _RemoteBackend(str(info["spec"]), str(info["fingerprint"]), bool(info["is_local"]))
    if info.get("hits") is None:
        return remote
    # a CachedBackend over the stand-in (never asked for anything), so the terminal's cache
    # line sums the workers' hits and misses; it has no store of its own
    cached = CachedBackend(lambda: remote, cast(Store, None), spec=remote.spec,
                           fingerprint=remote.fingerprint, is_local=remote.is_local)
    cached.hits, cached.misses = hits, misses
    return cached


@dataclass
class _Stored:
    records: list[dict[str, Any]]
    samples_saved: int
    early_stop: str | None
    owned: bool  # sent by the worker that ran the question's item


@dataclass
class Merger:
    """Collects worker payloads; `apply` fills an `EvalRun` as one process would have."""

    options: EvalOptions
    samples: int | None = None
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
                                           entry.get("early_stop"), owned)
        for entry in payload["files"]:
            self.files.setdefault(str(entry["file"]), tuple(entry["questions"]))
        for entry in payload.get("calibrations") or []:
            self.calibrations[str(entry["file"])] = dict(entry["report"])
        if payload.get("error"):
            self.errors.append(f"{worker}: {payload['error']}")

    def _qfile(self, path: str) -> QuestionFile:
        if path not in self._qfiles:
            self._qfiles[path] = load_file(Path(path), samples_override=self.samples)
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
        for key in self.ordered_keys():
            s = self.stored[key]
            records = [record_from_dict(r) for r in s.records]
            results[key] = rebuild_result(self._question(key), records, self.options,
                                          samples_saved=s.samples_saved,
                                          early_stop=s.early_stop)
        file_results: dict[str, FileResult] = {}
        agg_paths = [e[1] for e in self.order if e[0] == "agg"]
        for path in [p for p in agg_paths if p in self.files]:
            chosen = [results[(path, qid)] for qid in self.files[path] if (path, qid) in results]
            if len(chosen) < len(self.files[path]):
                continue  # a worker lost results; its aggregate item already reported that
            summary, thresholds, decision = aggregate(chosen, self._qfile(path).thresholds,
                                                      self.options)
            file_results[path] = FileResult(path, summary, thresholds, decision,
                                            self.files[path])
        run.results = results
        run.file_results = file_results
        # calibrations in collection order, as one process would have run them
        cal_paths = [e[1] for e in self.order if e[0] == "cal"]
        run.calibrations = [(p, self.calibrations[p]) for p in cal_paths
                            if p in self.calibrations]
        run.seconds = sum(float(p.get("seconds") or 0.0) for p in self.payloads)
        if self.errors:
            run.error = EmergentError("; ".join(self.errors))
        self._set_backends(run)

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
