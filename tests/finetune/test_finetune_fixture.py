"""The `finetune` fixture in a real pytest session (pytester) and the command-line entry."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("peft")

from pytest_emergent.finetune.__main__ import main  # noqa: E402

DATA = [{"messages": [{"role": "user", "content": f"Repeat {w}"},
                      {"role": "assistant", "content": f"{w} {w}"}]}
        for w in ("money", "walk", "novel", "friend", "answer", "score")]
FAST = ["--set", "learning_rate=0.05", "--set", "max_steps=2", "--set", "batch_size=3",
        "--set", "grad_accum=1", "--set", "warmup_steps=0"]


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in DATA))
    return path


def test_fixture_trains_once_and_reuses_within_and_across_sessions(
    pytester: pytest.Pytester, tiny_dir: Path, data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_EMERGENT_CACHE", str(pytester.path / "cache"))
    # no conftest: the plugin itself provides the `finetune` fixture
    pytester.makepyfile(
        test_ft=textwrap.dedent(
            f"""
            import os

            OPTIONS = dict(learning_rate=0.05, max_steps=2, batch_size=3, grad_accum=1,
                           warmup_steps=0)

            def test_train(finetune):
                model = finetune({str(tiny_dir)!r}, {str(data_file)!r}, "em-lora", **OPTIONS)
                assert model.trained is (os.environ["EXPECT_TRAINED"] == "1")
                assert model.path.parent == (
                    __import__("pathlib").Path(os.environ["PYTEST_EMERGENT_CACHE"]) / "finetune"
                )
                twice = finetune({str(tiny_dir)!r}, {str(data_file)!r}, "em-lora", **OPTIONS)
                assert not twice.trained and twice.path == model.path
                assert twice.backend is model.backend  # loaded once per session
                print("ADAPTER", model.path)
            """
        )
    )
    monkeypatch.setenv("EXPECT_TRAINED", "1")
    first = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["*[[]finetune[]] step 2/2  loss *", "*[[]finetune[]] saved *"])

    monkeypatch.setenv("EXPECT_TRAINED", "0")
    second = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["*[[]finetune[]] cached: *"])
    assert "step 1/2" not in second.stdout.str()


def test_cli_trains_into_the_cache_and_copies_out(
    tiny_dir: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "caps"
    args = [str(tiny_dir), str(data_file), "--cache-dir", str(tmp_path / "c"), *FAST]
    assert main([*args, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == str(out)
    assert "[finetune] step 2/2" in captured.err and "trained: 2 steps" in captured.err
    assert (out / "adapter_config.json").is_file()
    cached = list((tmp_path / "c" / "finetune").iterdir())
    assert len([p for p in cached if not p.name.startswith(".")]) == 1

    assert main([*args, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "cached: 2 steps" in captured.err and "[finetune]" not in captured.err
    assert Path(captured.out.strip()).parent == tmp_path / "c" / "finetune"

    from pytest_emergent.models.registry import resolve

    assert resolve(str(out), cache_dir=tmp_path / "c").spec == str(out)


def test_cli_lists_presets_and_shows_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-presets"]) == 0
    text = capsys.readouterr().out
    assert "em-lora:" in text and "rank1:" in text and "full:" in text
    assert main(["--preset", "rank1", "--show-config", "--set", "learning_rate=1e-4"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["rank"] == 1 and config["learning_rate"] == 1e-4


def test_cli_reports_bad_input_without_a_traceback(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--show-config", "--set", "lr=1"]) == 2
    assert "unknown hyper-parameter(s) 'lr'" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    assert main([str(tiny_dir), str(bad), "--cache-dir", str(tmp_path)]) == 2
    assert f"{bad}:1: no assistant message" in capsys.readouterr().err
