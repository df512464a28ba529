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


@pytest.mark.parametrize("kind, value", [
    ("generation", "5"), ("generation", "null"), ("generation", "not json"),
    ("judgment", "[]"), ("judgment", '{"exact": false}'),
    ("judgment", '{"exact": true, "probs": {"90": "x"}}'),
    ("judgment", '{"exact": "yes", "probs": {}}'),
])
def test_a_row_under_a_valid_checksum_that_is_no_value_is_recomputed(
        tmp_path: Path, kind: str, value: str) -> None:
    """Written by other code (or by hand) with its checksum recomputed: not a traceback,
    and not trusted; recomputed and counted with the damaged rows."""
    from pytest_emergent.models.cache import judgment_key

    store = Store(tmp_path / "c.sqlite")
    gens = _requests(2)
    judgments = [ScoreRequest((("user", "one"),), ("10", "50")),
                 ScoreRequest((("user", "two"),), ("10", "50"))]
    first = _wrapped(store, [])
    good = first.generate(gens) if kind == "generation" else first.candidate_probs(judgments)
    key = (generation_key("fp1", gens[1]) if kind == "generation"
           else judgment_key("fp1", judgments[1]))
    store.put_many(kind, [(key, value)])  # a valid checksum over the bad value
    again = _wrapped(store, [])
    out = again.generate(gens) if kind == "generation" else again.candidate_probs(judgments)
    # a new fake's answers start again at "one"; its judgments follow the script
    assert out == (good if kind == "judgment" else [good[0], "one"])
    assert (again.hits, again.misses) == (1, 1) and store.corrupted == 1


class _Flaky(FakeBackend):
    """The scripted fake, except that requests whose prompt says "broken" fail; the others of
    the same call come back with the error (`PartialBatchError.done`), as the API backends
    return them."""

    def candidate_probs(self, requests):  # type: ignore[no-untyped-def]
        from pytest_emergent.errors import PartialBatchError

        good = [i for i, r in enumerate(requests) if "broken" not in r.messages[-1][1]]
        results = super().candidate_probs([requests[i] for i in good])
        if len(good) == len(requests):
            return results
        raise PartialBatchError(f"{len(requests) - len(good)} failed",
                                dict(zip(good, results, strict=True)))

    def generate(self, requests):  # type: ignore[no-untyped-def]
        from pytest_emergent.errors import PartialBatchError

        good = [i for i, r in enumerate(requests) if r.seed != 1]
        results = super().generate([requests[i] for i in good])
        raise PartialBatchError("seed 1 failed", dict(zip(good, results, strict=True)))


def test_what_a_partly_failed_call_computed_is_kept(tmp_path: Path) -> None:
    """Judgments: the successes are stored and returned with the error, the other chunks
    are still asked for. Answers: the successes are stored, then the run stops."""
    from pytest_emergent.errors import PartialBatchError

    store = Store(tmp_path / "c.sqlite")
    prompts = ["one", "broken", "two", "three", "broken again", "four"]
    reqs = [ScoreRequest((("user", p),), ("10", "50", "60")) for p in prompts]
    flaky = CachedBackend(lambda: _Flaky(SCRIPT), store, spec="fake", fingerprint="fp1",
                          is_local=False, score_chunk_size=2)
    with pytest.raises(PartialBatchError, match=r"1 failed \(and 1 more failed calls\)") as info:
        flaky.candidate_probs(reqs)
    assert sorted(info.value.done) == [0, 2, 3, 5]
    assert info.value.done[0].probs == {"10": 1.0}
    assert store.count("judgment") == 4
    again = _wrapped(store, [])
    again.candidate_probs(reqs)
    assert (again.hits, again.misses) == (4, 2)

    with pytest.raises(BackendError, match="seed 1 failed") as gen_info:
        CachedBackend(lambda: _Flaky(SCRIPT), store, spec="fake", fingerprint="fp1",
                      is_local=False).generate(_requests(3))
    assert not isinstance(gen_info.value, PartialBatchError)
    assert store.count("generation") == 2
