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
from collections.abc import Iterable
from typing import Any

import pytest

from pytest_emergent.plugin.items import AGGREGATE_NAME, CALIBRATE_NAME, file_key, question_key
from pytest_emergent.run.merge import Key, Merger, worker_payload
from pytest_emergent.run.session import EvalRun
from pytest_emergent.spec import Question

#: the key of our entry in ``config.workeroutput``
OUTPUT_KEY = "emergent"


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


# --- controller side -------------------------------------------------------------------------


class ControllerPlugin:
    """On the controller: merge every worker's payload into the session's `EvalRun`."""

    def __init__(self, run: EvalRun) -> None:
        self.run = run
        self.merger = Merger(run.options, load=run.settings.load_questions)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", None) or {}
        text = output.get(OUTPUT_KEY)
        if text is None:  # a worker that crashed before sessionfinish sends nothing
            return
        worker = str(getattr(getattr(node, "gateway", None), "id", "worker"))
        self.merger.add(json.loads(text), worker=worker)
        self.merger.apply(self.run)


