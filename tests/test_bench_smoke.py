"""benchmarks/bench_eval.py end to end at a tiny size on the embedded model: every peer and
ratio line is printed with a number, and the cached re-run loads nothing. Not a speed test
(figures at this size mean nothing); it keeps the benchmark runnable as the code changes."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import transformers.modeling_utils  # noqa: F401  isort: skip  (torch once per process)

pytestmark = pytest.mark.integration

BENCH = Path(__file__).parents[1] / "benchmarks" / "bench_eval.py"


def test_bench_prints_every_peer_and_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_emergent.plugin.options import DEFAULT_JUDGE

    spec = importlib.util.spec_from_file_location("bench_eval", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--questions", "1", "--samples", "4", "--max-tokens", "6",
                "--naive-samples", "1", "--naive-judgments", "2", "--rounds", "2",
                "--judge", DEFAULT_JUDGE])
    out = capsys.readouterr().out
    number = r"[0-9]+\.[0-9]+"
    assert re.search(r"^CPU: .+; native bf16: (True|False); dtype float32", out, re.M)
    assert len(re.findall(rf"round \d: plugin +{number} tokens/s, batched HF generate +"
                          rf"{number} tokens/s .*: {number}x", out)) == 2
    assert re.search(rf"plugin / batched HF {number}x tokens/s \(medians of the rounds\); "
                     rf"plugin / naive {number}x", out)
    assert re.search(rf"plugin +{number} tokens/s = \d+% of \d+ tokens/s", out)
    assert re.search(r"llama\.cpp(: not installed| +[0-9.]+ tokens/s)", out)
    assert re.search(r"fully cached re-run \d+ ms", out)
    assert re.search(rf"speed-up {number}x \(largest score difference", out)
