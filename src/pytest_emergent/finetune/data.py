"""Chat datasets for fine-tuning: JSONL loading with line-numbered errors, a content hash,
a seeded held-out split, and tokenisation with the loss on assistant tokens only.

One example per line: `{"messages": [{"role": "user", "content": "..."}, {"role":
"assistant", "content": "..."}]}`. Roles are `system` (first message only), `user` and
`assistant`; an assistant message may carry `"weight": 0` to keep it out of the loss (the
OpenAI fine-tuning convention). Other keys on a line are ignored.

Assistant spans are found with the tokenizer's own chat template, never by guessing marker
strings: for each assistant message the conversation is rendered up to it with the generation
prompt, and again including it; the tokens in between are the reply plus the template's
end-of-turn marker, which is trained so the model learns to stop. Whitespace the template
puts after that marker (ChatML's newline) is not trained: generation never produces it.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_emergent.errors import EmergentError
from pytest_emergent.models.base import Messages
from pytest_emergent.resources import fixtures_dir

ROLES = ("system", "user", "assistant")
IGNORE = -100
_MAX_REPORTED = 10


class DatasetError(EmergentError):
    """A dataset is malformed, or a chat template cannot be masked; names file and line."""


@dataclass(frozen=True)
class ChatExample:
    """One training conversation. `weights[i]` is 0 for a message kept out of the loss."""

    messages: Messages
    weights: tuple[int, ...]
    #: where it came from, for error messages: "data.jsonl:12" or "example 3"
    where: str = ""

    def as_json(self) -> dict[str, Any]:
        """The JSONL form (weights only where they are 0)."""
        out = []
        for (role, content), weight in zip(self.messages, self.weights, strict=True):
            item: dict[str, Any] = {"role": role, "content": content}
            if role == "assistant" and weight == 0:
                item["weight"] = 0
            out.append(item)
        return {"messages": out}


@dataclass(frozen=True)
class Dataset:
    """Validated examples with a name (for messages) and a content hash (for cache keys)."""

    name: str
    examples: tuple[ChatExample, ...]

    @property
    def content_hash(self) -> str:
        return dataset_hash(self.examples)

    def __len__(self) -> int:
        return len(self.examples)


@dataclass(frozen=True)
class Encoded:
    """Token ids and labels (`IGNORE` outside trained assistant tokens) of one example."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    #: True when the conversation was longer than the length limit and was cut
    truncated: bool = False

    @property
    def n_trained(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


# -- loading and validation ------------------------------------------------------------


def shipped_datasets() -> list[str]:
    """Names of the datasets shipped in `fixtures_dir()` (file stems)."""
    return sorted(p.stem for p in fixtures_dir().glob("*.jsonl"))


def load_dataset(source: str | Path | Dataset | Sequence[Any], *, what: str = "dataset") -> Dataset:
    """A `Dataset` from a JSONL path, a shipped dataset name, or a list of examples.

    Examples in a list may be `ChatExample`s, `{"messages": [...]}` dicts or bare message
    lists. Raises `DatasetError` naming every bad line (up to ten).
    """
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.exists() and isinstance(source, str) and "/" not in source:
            shipped = fixtures_dir() / f"{source}.jsonl"
            if shipped.is_file():
                path = shipped
            else:
                raise DatasetError(
                    f"{what} {source!r}: no such file, and not a shipped dataset "
                    f"(shipped: {', '.join(shipped_datasets()) or 'none found'})"
                )
        return load_jsonl(path)
    items = list(source)
    examples = _parse_all(
        ((f"example {i}", item) for i, item in enumerate(items)), what=what
    )
    return Dataset(f"<{len(examples)} in-memory examples>", tuple(examples))


def load_jsonl(path: str | Path) -> Dataset:
    """Read and validate a chat JSONL file (blank lines are skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read it: {exc}") from exc
    rows: list[tuple[str, Any]] = []
    errors: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            errors.append(f"{path}:{lineno}: not valid JSON (nested too deeply)")
            continue
        if isinstance(row, dict):
            rows.append((f"{path}:{lineno}", row))
        else:
            errors.append(f"{path}:{lineno}: expected an object {{\"messages\": [...]}}, "
                          f"got a JSON {type(row).__name__}")
    examples = _parse_all(rows, what=str(path), errors=errors)
    return Dataset(str(path), tuple(examples))


def _parse_all(
    rows: Iterable[tuple[str, Any]], *, what: str, errors: list[str] | None = None
) -> list[ChatExample]:
    errors = list(errors or [])
    examples: list[ChatExample] = []
    for where, item in rows:
        try:
            examples.append(parse_example(item, where))
        except DatasetError as exc:
            errors.append(str(exc))
    if errors:
        shown = errors[:_MAX_REPORTED]
        more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        raise DatasetError(
            f"{what}: {len(errors)} invalid example(s):\n  " + "\n  ".join(shown) + more
        )
    if not examples:
        raise DatasetError(f"{what}: no examples (an empty dataset trains nothing)")
    return examples


def parse_example(item: Any, where: str) -> ChatExample:
    """Validate one example (see the module docstring for the format)."""
    if isinstance(item, ChatExample):
        return item
    if isinstance(item, Mapping):
        if "messages" not in item:
            raise DatasetError(f"{where}: missing 'messages' (expected {{\"messages\": [...]}})")
        messages = item["messages"]
    else:
        messages = item
    if not isinstance(messages, (list, tuple)) or not messages:
        raise DatasetError(f"{where}: 'messages' must be a non-empty list of messages")
    parsed: list[tuple[str, str]] = []
    weights: list[int] = []
    for index, message in enumerate(messages):
        at = f"{where}: message {index}"
        if not isinstance(message, Mapping):
            raise DatasetError(f"{at}: expected an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise DatasetError(f"{at}: 'role' must be one of {', '.join(ROLES)} (got {role!r})")
        if not isinstance(content, str) or not content.strip():
            raise DatasetError(f"{at}: 'content' must be a non-empty string (got {content!r})")
        if role == "system" and index != 0:
            raise DatasetError(f"{at}: a 'system' message may only come first")
        weight = message.get("weight", 1)
        if weight not in (0, 1) or isinstance(weight, bool):
            raise DatasetError(f"{at}: 'weight' must be 0 or 1 (got {weight!r})")
        if weight == 0 and role != "assistant":
            raise DatasetError(f"{at}: 'weight' applies to assistant messages only")
        parsed.append((role, content))
        weights.append(int(weight))
    roles = [r for r, _ in parsed if r != "system"]
    if not roles or roles[0] != "user":
        raise DatasetError(f"{where}: the conversation must start with a user message")
    for i in range(1, len(roles)):
        if roles[i] == roles[i - 1]:
            raise DatasetError(
                f"{where}: two {roles[i]!r} messages in a row; user and assistant must alternate"
            )
    if not any(r == "assistant" and w for (r, _), w in zip(parsed, weights, strict=True)):
        raise DatasetError(f"{where}: no assistant message to train on")
    return ChatExample(tuple(parsed), tuple(weights), where)


def dataset_hash(examples: Iterable[ChatExample]) -> str:
    """sha256 (first 20 hex) of the examples' content: order and text, not file layout."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(example.as_json(), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:20]


def split_holdout(
    examples: Sequence[ChatExample], holdout: float, seed: int
) -> tuple[list[ChatExample], list[ChatExample]]:
    """(train, held out): `holdout` is a share (< 1) or a count; the draw is seeded."""
    n = len(examples)
    if holdout <= 0:
        return list(examples), []
    count = round(n * holdout) if holdout < 1 else int(holdout)
    count = max(1, count)
    if count >= n:
        raise DatasetError(
            f"holdout {holdout} leaves no training examples out of {n}; use a smaller holdout"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return (
        [e for i, e in enumerate(examples) if i not in held],
        [e for i, e in enumerate(examples) if i in held],
    )


# -- tokenisation with assistant-only labels --------------------------------------------


def _render(tokenizer: Any, messages: Messages, *, generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": r, "content": c} for r, c in messages],
        tokenize=False,
        add_generation_prompt=generation_prompt,
    )
    # the template supplies its special tokens; the backend encodes the same way
    return list(tokenizer(str(text), add_special_tokens=False)["input_ids"])


def assistant_spans(
    tokenizer: Any, example: ChatExample
) -> tuple[list[int], list[tuple[int, int]]]:
    """(token ids of the whole conversation, [start, end) of each trained assistant reply).

    A span covers the reply and the template's end-of-turn token. Raises `DatasetError` when
    the template renders earlier turns differently once later turns are added, since the
    reply tokens could then not be located exactly.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise DatasetError("the tokenizer has no chat template; fine-tuning needs a chat model")
    messages = example.messages
    full = _render(tokenizer, messages, generation_prompt=False)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    spans: list[tuple[int, int]] = []
    for i, ((role, _), weight) in enumerate(zip(messages, example.weights, strict=True)):
        if role != "assistant" or not weight:
            continue
        prompt = _render(tokenizer, messages[:i], generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if upto[: len(prompt)] != prompt or full[: len(upto)] != upto:
            raise DatasetError(
                f"{example.where}: the chat template renders the conversation before "
                f"assistant message {i} differently once the reply is added, so the reply "
                "tokens cannot be located; assistant-only loss needs a template whose "
                "rendering of earlier turns does not change (ChatML, Llama 3 and Gemma "
                "templates qualify)"
            )
        start, end = len(prompt), len(upto)
        # drop whitespace the template adds after its end-of-turn token
        while (
            end - start >= 2
            and upto[end - 2] in special
            and not str(tokenizer.decode([upto[end - 1]])).strip()
        ):
            end -= 1
        if end <= start:
            raise DatasetError(f"{example.where}: assistant message {i} renders to no tokens")
        spans.append((start, end))
    return full, spans


def encode_example(tokenizer: Any, example: ChatExample, max_len: int) -> Encoded | None:
    """Token ids with labels on the trained assistant tokens, cut at `max_len` tokens.

    Returns None when nothing trainable is left after the cut.
    """
    ids, spans = assistant_spans(tokenizer, example)
    labels = [IGNORE] * len(ids)
    for start, end in spans:
        labels[start:end] = ids[start:end]
    truncated = len(ids) > max_len
    ids, labels = ids[:max_len], labels[:max_len]
    # a label at position 0 predicts nothing (no token before it)
    if all(t == IGNORE for t in labels[1:]):
        return None
    return Encoded(tuple(ids), tuple(labels), truncated)


def encode_all(
    tokenizer: Any, examples: Sequence[ChatExample], max_len: int
) -> tuple[list[Encoded], int, int]:
    """(encoded examples, number cut at `max_len`, number dropped as fully cut)."""
    out: list[Encoded] = []
    cut = dropped = 0
    for example in examples:
        enc = encode_example(tokenizer, example, max_len)
        if enc is None:
            dropped += 1
            continue
        cut += enc.truncated
        out.append(enc)
    return out, cut, dropped
