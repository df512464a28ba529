"""Content-addressed store for generations and judgments, and a backend wrapper that uses it.

Generations are keyed by the model fingerprint, the messages, the sampling parameters and the
per-sample seed (which encodes the sample index); judgments by the judge fingerprint, the
rendered prompt, the candidates and the assistant prefix. Each row carries a checksum of its
key and value: a row that does not match is treated as missing and recomputed, never trusted.

`CachedBackend` asks the wrapped backend only for what is missing, in chunks, and writes each
chunk as soon as it is produced, so an interrupted run resumes where it stopped; of a call
that partly failed, the results that came back are stored too (`PartialBatchError`), and a
row whose checksum holds but whose value is not an answer or a judgment is recomputed. The
wrapped backend is created lazily: a run whose answers are all stored never loads the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pytest_emergent.errors import BackendError, EmergentError, PartialBatchError
from pytest_emergent.models.base import Backend, CandidateProbs, SampleRequest, ScoreRequest

SCHEMA_VERSION = 1
#: seconds a process waits for another one holding the database
BUSY_TIMEOUT = 30.0


def _digest(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def generation_key(fingerprint: str, request: SampleRequest) -> str:
    return _digest("gen", SCHEMA_VERSION, fingerprint, request.messages, request.temperature,
                   request.max_tokens, request.seed)


def judgment_key(fingerprint: str, request: ScoreRequest) -> str:
    return _digest("judge", SCHEMA_VERSION, fingerprint, request.messages, request.candidates,
                   request.assistant_prefix)


class CacheError(EmergentError):
    """The answer/judgment cache file cannot be used; the message names it and the fix."""


class Store:
    """A small SQLite key-value store with per-row checksums; safe across processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # the 30 s busy timeout covers reads and writes of concurrent processes (xdist workers)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT,
                                       check_same_thread=False)
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise self.unusable(exc) from None
        self.corrupted = 0  # rows found damaged and dropped this session

    def unusable(self, exc: Exception) -> CacheError:
        """The one-line error for a cache file that cannot be used, with the fix."""
        return CacheError(
            f"{self.path}: not a usable pytest-emergent cache ({exc}); delete it (its answers "
            "and judgments will be computed again) or run with --em-no-cache"
        )

    def _init_schema(self) -> None:
        """WAL mode and the table, retried while another process holds the database.

        Switching to WAL while another connection opens the same file fails at once with
        "database is locked" (SQLite calls no busy handler there), which happens when
        several xdist workers open a fresh cache together.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT
        delay = 0.01
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, kind TEXT NOT "
                    "NULL, value TEXT NOT NULL, checksum TEXT NOT NULL)"
                )
                self._check_schema()
                self._db.commit()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                self._db.rollback()
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)

    def _check_schema(self) -> None:
        """The table's columns and the recorded schema version must be ours."""
        columns = [row[1] for row in self._db.execute("PRAGMA table_info(entries)")]
        if columns != ["key", "kind", "value", "checksum"]:
            raise CacheError(f"{self.path}: its 'entries' table has columns {columns}, not "
                             "a pytest-emergent cache's; delete it or run with --em-no-cache")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        # several processes may open a fresh cache at once: the first insert wins
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                         (str(SCHEMA_VERSION),))
        row = self._db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if row[0] != str(SCHEMA_VERSION):
            raise CacheError(
                f"{self.path}: written with cache schema {row[0]}, this version reads "
                f"{SCHEMA_VERSION}; delete it (everything is computed again), use another "
                "--em-cache-dir, or run with --em-no-cache"
            )

    @staticmethod
    def _checksum(key: str, value: str) -> str:
        return hashlib.sha256(f"{key}\x00{value}".encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """Valid stored values for `keys`; damaged rows are deleted and left out."""
        found: dict[str, str] = {}
        with self._lock, self._translated():
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, value, checksum FROM entries WHERE key IN ({marks})", chunk
                ).fetchall()
                for key, value, checksum in rows:
                    if checksum == self._checksum(key, value):
                        found[key] = value
                    else:
                        self.corrupted += 1
                        self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
            self._db.commit()
        return found

    def put_many(self, kind: str, items: Sequence[tuple[str, str]]) -> None:
        """Store (key, value) pairs in one transaction."""
        with self._lock, self._translated():
            self._db.executemany(
                "INSERT OR REPLACE INTO entries (key, kind, value, checksum) VALUES (?, ?, ?, ?)",
                [(k, kind, v, self._checksum(k, v)) for k, v in items],
            )
            self._db.commit()

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """A file damaged under a running session: the same one-line error."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise self.unusable(exc) from None

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
            return int(
                self._db.execute("SELECT COUNT(*) FROM entries WHERE kind = ?", (kind,))
                .fetchone()[0]
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _encode_probs(probs: CandidateProbs) -> str:
    return json.dumps(asdict(probs), sort_keys=True)


def _decode_probs(text: str) -> CandidateProbs:
    """A stored judgment; ValueError where the row is not one (a row written by other code
    under a valid checksum): the caller recomputes it."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("exact"), bool):
        raise ValueError("not a stored judgment")
    probs, top = _table(data.get("probs")), _table(data.get("top", {}))
    return CandidateProbs(probs=probs, exact=data["exact"], top=top)


def _table(value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
        raise ValueError("not a stored judgment")
    return value


def _decode_answer(text: str) -> str:
    """A stored answer; ValueError where the row is not one."""
    value = json.loads(text)
    if not isinstance(value, str):
        raise ValueError("not a stored answer")
    return value


class CachedBackend:
    """Wraps a backend (made lazily by `factory`) with a `Store`.

    `fingerprint` must be known without loading the model; `rejudge=True` forbids generating:
    a missing answer is an error that says to run once without `--em-rejudge`.
    """

    def __init__(
        self,
        factory: Callable[[], Backend],
        store: Store,
        *,
        spec: str,
        fingerprint: str,
        is_local: bool,
        chunk_size: int = 64,
        score_chunk_size: int = 128,
        rejudge: bool = False,
        on_chunk: Callable[[str, int, int], None] | None = None,
        weights_fingerprint: str | None = None,
    ) -> None:
        self._factory = factory
        self._inner: Backend | None = None
        self.store = store
        self.spec = spec
        self.fingerprint = fingerprint
        #: the wrapped backend's fingerprint with its weights in float32 (see HFBackend)
        self.weights_fingerprint = weights_fingerprint or fingerprint
        self.is_local = is_local
        self.chunk_size = chunk_size
        #: judgments per inner call: a local judge reuses prompt prefixes within one call only
        self.score_chunk_size = score_chunk_size
        self.rejudge = rejudge
        self.on_chunk = on_chunk
        self.hits = 0
        self.misses = 0

    @property
    def inner(self) -> Backend:
        if self._inner is None:
            self._inner = self._factory()
        return self._inner

    def _run(
        self,
        kind: str,
        requests: Sequence[Any],
        key_of: Callable[[Any], str],
        compute: Callable[[list[Any]], list[Any]],
        encode: Callable[[Any], str],
        decode: Callable[[str], Any],
    ) -> list[Any]:
        keys = [key_of(r) for r in requests]
        stored = self.store.get_many(keys)
        out: list[Any] = [None] * len(requests)
        todo: dict[str, list[int]] = {}  # key -> positions; identical requests computed once
        for i, key in enumerate(keys):
            if key in stored:
                try:
                    out[i] = decode(stored[key])
                    continue
                except ValueError:  # a row the checksum passed but no decoder reads
                    del stored[key]
                    self.store.corrupted += 1
            todo.setdefault(key, []).append(i)
        missing = sum(len(v) for v in todo.values())
        self.hits += len(requests) - missing
        self.misses += missing
        if todo and kind == "generation" and self.rejudge:
            raise BackendError(
                f"--em-rejudge: {missing} answers of {self.spec} are not stored; run once "
                "without --em-rejudge to generate them"
            )
        done = len(requests) - missing
        filled = set(range(len(requests))) - {i for positions in todo.values() for i in positions}
        pending = list(todo.items())
        size = self.chunk_size if kind == "generation" else self.score_chunk_size
        failures: list[BackendError] = []
        for start in range(0, len(pending), size):
            chunk = pending[start:start + size]
            error: BackendError | None = None
            try:
                computed = compute([requests[positions[0]] for _key, positions in chunk])
                if len(computed) != len(chunk):
                    raise BackendError(f"{self.spec}: returned {len(computed)} results for "
                                       f"{len(chunk)} requests")
                values: dict[int, Any] = dict(enumerate(computed))
            except PartialBatchError as exc:  # keep what the failed call did compute
                values, error = exc.done, exc
            except BackendError as exc:
                values, error = {}, exc
            self.store.put_many(kind, [(chunk[j][0], encode(v)) for j, v in values.items()])
            for j, value in values.items():
                for i in chunk[j][1]:
                    out[i] = value
                    filled.add(i)
                done += len(chunk[j][1])
            if self.on_chunk is not None:
                self.on_chunk(kind, done, len(requests))
            if error is not None:
                if kind == "generation":  # the run stops; a rerun resumes from the store
                    raise BackendError(str(error)) from None
                failures.append(error)  # the other judgments are still asked for
        if failures:
            more = f" (and {len(failures) - 1} more failed calls)" if len(failures) > 1 else ""
            if not filled:
                raise BackendError(f"{failures[0]}{more}")
            raise PartialBatchError(f"{failures[0]}{more}", {i: out[i] for i in filled})
        return out

    def generate(self, requests: Sequence[SampleRequest]) -> list[str]:
        return self._run(
            "generation", requests, lambda r: generation_key(self.fingerprint, r),
            lambda rs: self.inner.generate(rs), lambda v: json.dumps(v), _decode_answer,
        )

    def candidate_probs(self, requests: Sequence[ScoreRequest]) -> list[CandidateProbs]:
        return self._run(
            "judgment", requests, lambda r: judgment_key(self.fingerprint, r),
            lambda rs: self.inner.candidate_probs(rs), _encode_probs, _decode_probs,
        )

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
