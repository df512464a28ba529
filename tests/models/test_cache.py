"""The content-addressed store and the caching backend wrapper, on the scripted fake."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pytest_emergent.errors import BackendError
from pytest_emergent.models.base import SampleRequest, ScoreRequest
from pytest_emergent.models.cache import CachedBackend, Store, generation_key
from pytest_emergent.models.fake import FakeBackend

SCRIPT = {
    "generate": [{"answers": ["one", "two", "three", "four", "five"]}],
    "judge": [{"when": ["one"], "score": 10}, {"probs": {"50": 0.5, "60": 0.5}}],
}


def _requests(n: int) -> list[SampleRequest]:
    return [SampleRequest(messages=(("user", "hi"),), seed=i) for i in range(n)]


def _wrapped(store: Store, fakes: list[FakeBackend], **kw: object) -> CachedBackend:
    def factory() -> FakeBackend:
        fake = FakeBackend(SCRIPT)
        fakes.append(fake)
        return fake

    return CachedBackend(factory, store, spec="fake", fingerprint="fp1", is_local=False, **kw)


def test_second_run_is_served_from_the_store_without_loading(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    made: list[FakeBackend] = []
    first = _wrapped(store, made).generate(_requests(5))
    assert first == ["one", "two", "three", "four", "five"]
    again = _wrapped(store, made)
    assert again.generate(_requests(5)) == first
    assert (again.hits, again.misses) == (5, 0)
    assert len(made) == 1  # the second wrapper never built its backend


def test_only_missing_entries_are_computed(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    made: list[FakeBackend] = []
    _wrapped(store, made).generate(_requests(2))
    second = _wrapped(store, made)
    out = second.generate(_requests(4))
    # the fake's counter restarts in the new backend: only seeds 2 and 3 were asked for
    assert out == ["one", "two", "one", "two"]
    assert len(made[1].calls) == 2
    assert (second.hits, second.misses) == (2, 2)


def test_chunks_are_written_as_produced(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")

    class Dies(FakeBackend):
        def generate(self, requests):  # type: ignore[no-untyped-def]
            if any(r.seed >= 4 for r in requests):
                raise KeyboardInterrupt  # killed halfway
            return super().generate(requests)

    wrapped = CachedBackend(lambda: Dies(SCRIPT), store, spec="fake", fingerprint="fp1",
                            is_local=False, chunk_size=2)
    with pytest.raises(KeyboardInterrupt):
        wrapped.generate(_requests(6))
    assert store.count("generation") == 4  # two chunks done before the kill
    resumed = _wrapped(store, [], chunk_size=2)
    resumed.generate(_requests(6))
    assert (resumed.hits, resumed.misses) == (4, 2)


def test_corrupted_rows_are_detected_and_recomputed(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    store = Store(path)
    _wrapped(store, []).generate(_requests(3))
    key = generation_key("fp1", _requests(3)[1])
    db = sqlite3.connect(path)
    db.execute("UPDATE entries SET value = ? WHERE key = ?", ('"tampered"', key))
    db.commit()
    db.close()
    again = _wrapped(store, [])
    out = again.generate(_requests(3))
    assert "tampered" not in out
    assert store.corrupted == 1
    assert again.misses == 1


def test_keys_depend_on_fingerprint_and_sampling(tmp_path: Path) -> None:
    r = SampleRequest(messages=(("user", "hi"),), temperature=1.0, max_tokens=8, seed=3)
    keys = {
        generation_key("fp1", r),
        generation_key("fp2", r),
        generation_key("fp1", SampleRequest(r.messages, 0.5, 8, 3)),
        generation_key("fp1", SampleRequest(r.messages, 1.0, 9, 3)),
        generation_key("fp1", SampleRequest(r.messages, 1.0, 8, 4)),
        generation_key("fp1", SampleRequest((("system", "s"), ("user", "hi")), 1.0, 8, 3)),
    }
    assert len(keys) == 6


def test_judgments_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    reqs = [ScoreRequest((("user", "one"),), ("10", "50", "60")),
            ScoreRequest((("user", "two"),), ("10", "50", "60"))]
    first = _wrapped(store, []).candidate_probs(reqs)
    again = _wrapped(store, [])
    assert again.candidate_probs(reqs) == first
    assert first[0].probs == {"10": 1.0}
    assert again.misses == 0


def test_rejudge_refuses_to_generate(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    with pytest.raises(BackendError, match="--em-rejudge: 2 answers"):
        _wrapped(store, [], rejudge=True).generate(_requests(2))


@pytest.mark.parametrize("damage", ["random bytes", "a directory", "a foreign table",
                                    "a newer schema"])
def test_a_damaged_or_foreign_cache_is_one_clear_error(tmp_path: Path, damage: str) -> None:
    import sqlite3

    from pytest_emergent.models.cache import CacheError, Store

    path = tmp_path / "records.sqlite"
    if damage == "random bytes":
        path.write_bytes(bytes(range(256)) * 20)
    elif damage == "a directory":
        path.mkdir()
    elif damage == "a foreign table":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE entries (k TEXT, v TEXT)")
        db.commit()
        db.close()
    else:
        Store(path).close()
        db = sqlite3.connect(path)
        db.execute("UPDATE meta SET value = '999' WHERE name = 'schema'")
        db.commit()
        db.close()
    with pytest.raises(CacheError) as info:
        Store(path)
    message = str(info.value)
    assert str(path) in message and "--em-no-cache" in message
    assert "\n" not in message


def test_a_fresh_cache_records_its_schema_and_reopens(tmp_path: Path) -> None:
    import sqlite3

    from pytest_emergent.models.cache import SCHEMA_VERSION, Store

    store = Store(tmp_path / "records.sqlite")
    store.put_many("gen", [("k", "v")])
    store.close()
    again = Store(tmp_path / "records.sqlite")
    assert again.get_many(["k"]) == {"k": "v"}
    again.close()
    row = sqlite3.connect(tmp_path / "records.sqlite").execute(
        "SELECT value FROM meta WHERE name = 'schema'").fetchone()
    assert row == (str(SCHEMA_VERSION),)
