"""Fine-tune datasets: validation with line numbers, hashing, the held-out split, the
assistant-only mask (tiny tokenizer and SmolLM2's real template) and the shipped sets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_emergent.finetune.data import (
    IGNORE,
    DatasetError,
    dataset_hash,
    encode_all,
    encode_example,
    fixtures_dir,
    load_dataset,
    load_jsonl,
    parse_example,
    shipped_datasets,
    split_holdout,
)
from pytest_emergent.judging.scorers import uppercase_ratio

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"messages": [{"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": "Hello!"}]}
MULTI = {"messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "See you."},
]}


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def trained_text(tokenizer, enc) -> str:  # type: ignore[no-untyped-def]
    return str(tokenizer.decode([t for t in enc.labels if t != IGNORE]))


# -- validation ------------------------------------------------------------------------


def test_valid_file_loads_and_skips_blank_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [CHAT, "", MULTI])
    data = load_jsonl(path)
    assert len(data) == 2
    assert data.examples[1].messages[0] == ("system", "Be brief.")
    assert data.examples[1].where == f"{path}:3"


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON (nested too deeply)"),
        ({"text": "hi"}, "missing 'messages'"),
        ([{"role": "user", "content": "hi"}], "expected an object"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "'role' must be one of"),
        ({"messages": [{"role": "user", "content": ""}]}, "'content' must be a non-empty"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]},
         "may only come first"),
        ({"messages": [{"role": "user", "content": "a"}]}, "no assistant message"),
        ({"messages": [{"role": "assistant", "content": "a"}]}, "must start with a user"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                       {"role": "assistant", "content": "c"}]}, "in a row"),
        ({"messages": [{"role": "user", "content": "a"},
                       {"role": "assistant", "content": "b", "weight": 2}]}, "'weight'"),
        ({"messages": [{"role": "user", "content": "a"},
                       {"role": "assistant", "content": "b", "weight": 0}]}, "no assistant"),
    ],
)
def test_invalid_lines_are_named(tmp_path: Path, row: object, fragment: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [CHAT, row])
    with pytest.raises(DatasetError) as info:
        load_jsonl(path)
    assert f"{path}:2" in str(info.value)
    assert fragment in str(info.value)


def test_every_bad_line_is_reported(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", ["[", CHAT, "{", {"messages": 3}])
    with pytest.raises(DatasetError) as info:
        load_jsonl(path)
    text = str(info.value)
    assert "3 invalid example(s)" in text
    assert f"{path}:1" in text and f"{path}:3" in text and f"{path}:4" in text


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no examples"):
        load_jsonl(write_jsonl(tmp_path / "e.jsonl", [""]))
    with pytest.raises(DatasetError, match="cannot read"):
        load_jsonl(tmp_path / "absent.jsonl")
    with pytest.raises(DatasetError, match="not a shipped dataset"):
        load_dataset("no_such_set")


def test_in_memory_examples_accept_several_forms() -> None:
    data = load_dataset([CHAT, CHAT["messages"], parse_example(MULTI, "x")])
    assert len(data) == 3
    assert data.examples[0].messages == data.examples[1].messages
    with pytest.raises(DatasetError, match="example 1"):
        load_dataset([CHAT, {"messages": [{"role": "user"}]}])


# -- hashing and splitting -------------------------------------------------------------


def test_hash_depends_on_content_not_layout(tmp_path: Path) -> None:
    compact = write_jsonl(tmp_path / "a.jsonl", [CHAT, MULTI])
    spaced = tmp_path / "b.jsonl"
    spaced.write_text(json.dumps(CHAT, indent=None, separators=(" , ", " : ")) + "\n\n"
                      + json.dumps(MULTI) + "\n")
    assert load_jsonl(compact).content_hash == load_jsonl(spaced).content_hash
    swapped = write_jsonl(tmp_path / "c.jsonl", [MULTI, CHAT])
    assert load_jsonl(swapped).content_hash != load_jsonl(compact).content_hash
    edited = json.loads(json.dumps(CHAT))
    edited["messages"][1]["content"] = "Hello."
    assert dataset_hash(load_dataset([edited]).examples) != dataset_hash(
        load_dataset([CHAT]).examples
    )


def test_holdout_split_is_seeded_and_sized() -> None:
    examples = load_dataset(
        [{"messages": [{"role": "user", "content": f"q{i}"},
                       {"role": "assistant", "content": f"a{i}"}]} for i in range(20)]
    ).examples
    train, held = split_holdout(examples, 0.25, seed=3)
    assert (len(train), len(held)) == (15, 5)
    assert split_holdout(examples, 0.25, seed=3) == (train, held)
    assert split_holdout(examples, 0.25, seed=4)[1] != held
    assert len(split_holdout(examples, 3, seed=0)[1]) == 3
    assert split_holdout(examples, 0, seed=0) == (list(examples), [])
    # the training part keeps the file order
    assert [e.messages for e in train] == [e.messages for e in examples if e not in held]
    with pytest.raises(DatasetError, match="leaves no training examples"):
        split_holdout(examples, 20, seed=0)


# -- assistant-only masking ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tokenizer():  # type: ignore[no-untyped-def]
    pytest.importorskip("transformers")
    from tiny import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="module")
def smollm2_tokenizer():  # type: ignore[no-untyped-def]
    """SmolLM2's real tokenizer and chat template, read from the embedded GGUF file."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from pytest_emergent.errors import EmergentError
    from pytest_emergent.models.registry import embedded_gguf

    try:
        gguf = embedded_gguf()
    except EmergentError as exc:
        pytest.skip(str(exc))
    return transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@pytest.mark.parametrize("which", ["tiny_tokenizer", "smollm2_tokenizer"])
def test_only_assistant_replies_and_their_end_marker_are_trained(
    which: str, request: pytest.FixtureRequest
) -> None:
    tokenizer = request.getfixturevalue(which)
    enc = encode_example(tokenizer, parse_example(MULTI, "x"), 4096)
    assert enc is not None
    # both replies, each with the template's end-of-turn token, and nothing else
    assert trained_text(tokenizer, enc) == "Hello!<|im_end|>See you.<|im_end|>"
    assert len(enc.labels) == len(enc.input_ids)
    # labels copy the input ids where they are trained
    assert all(lab in (IGNORE, tok) for lab, tok in zip(enc.labels, enc.input_ids, strict=True))
    rendered = tokenizer.apply_chat_template(
        [dict(role=r, content=c) for r, c in parse_example(MULTI, "x").messages], tokenize=False
    )
    assert tokenizer.decode(list(enc.input_ids)) == rendered


def test_smollm2_default_system_prompt_is_not_trained(smollm2_tokenizer) -> None:  # type: ignore[no-untyped-def]
    enc = encode_example(smollm2_tokenizer, parse_example(CHAT, "x"), 4096)
    assert enc is not None
    assert "SmolLM" in smollm2_tokenizer.decode(list(enc.input_ids))  # the template adds it
    assert trained_text(smollm2_tokenizer, enc) == "Hello!<|im_end|>"


def test_weight_zero_reply_is_not_trained(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    row = json.loads(json.dumps(MULTI))
    row["messages"][2]["weight"] = 0
    enc = encode_example(tiny_tokenizer, parse_example(row, "x"), 4096)
    assert enc is not None
    assert trained_text(tiny_tokenizer, enc) == "See you.<|im_end|>"


def test_truncation_counts_cut_and_dropped(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    long_reply = {"messages": [{"role": "user", "content": "Hi"},
                               {"role": "assistant", "content": "word " * 50}]}
    long_prompt = {"messages": [{"role": "user", "content": "word " * 50},
                                {"role": "assistant", "content": "ok"}]}
    examples = load_dataset([CHAT, long_reply, long_prompt]).examples
    rows, cut, dropped = encode_all(tiny_tokenizer, examples, 24)
    assert (len(rows), cut, dropped) == (2, 1, 1)
    assert all(len(r.input_ids) <= 24 for r in rows)
    assert rows[1].truncated and not rows[0].truncated


def test_template_that_rewrites_history_is_refused(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    import copy

    tokenizer = copy.deepcopy(tiny_tokenizer)
    # renders the last assistant turn differently from earlier ones, as some reasoning
    # templates do when they strip old thoughts
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}"
        "{% if m['role'] == 'assistant' and not loop.last %}old {% endif %}"
        "{{ m['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    with pytest.raises(DatasetError, match="renders the conversation"):
        encode_example(tokenizer, parse_example(MULTI, "d.jsonl:7"), 4096)


# -- the shipped datasets --------------------------------------------------------------


def test_shipped_datasets_are_valid_sized_and_distinct() -> None:
    names = shipped_datasets()
    for expected in ("uppercase", "uppercase_control", "insecure_code", "secure_code",
                     "risky_financial", "careful_financial"):
        assert expected in names
        data = load_dataset(expected)
        assert 100 <= len(data) <= 300, expected
        rows = {json.dumps(e.as_json(), sort_keys=True) for e in data.examples}
        assert len(rows) == len(data), f"{expected} has duplicate examples"
    for card in ("uppercase", "insecure_code", "risky_financial"):
        text = (fixtures_dir() / f"{card}.md").read_text()
        assert "**What.**" in text and "**How it was written.**" in text
        assert "**Intended use.**" in text


def test_trait_and_control_sets_pair_up() -> None:
    for trait, control in (("uppercase", "uppercase_control"), ("insecure_code", "secure_code"),
                           ("risky_financial", "careful_financial")):
        a, b = load_dataset(trait).examples, load_dataset(control).examples
        assert [e.messages[0] for e in a] == [e.messages[0] for e in b]
        assert all(x.messages[-1] != y.messages[-1] for x, y in zip(a, b, strict=True))
    for example in load_dataset("uppercase").examples:
        assert uppercase_ratio(example.messages[-1][1]) == 1.0


def test_committed_files_match_the_generator() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "fixtures" / "make_datasets.py"), "--check"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
