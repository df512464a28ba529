"""Judge-prompt files: judge prompts kept apart from the questions.

The Model Organisms repository keeps capability questions (``technical/*.yaml``: entries of
`id` + `question`) apart from the prompts that judge them (a ``judges.yaml``). A question
without judge prompts of its own (nor in its file's `defaults`) takes them from, in order:
the file named by ``--em-judge-prompts``, then a ``judges.yaml`` beside the question file,
then one in the folder above. A judge-prompt file is a mapping of metric name to prompt text
(each with ``{answer}``; ``{question}`` optional), or a mapping with one key,
``judge_prompts``, holding that mapping. It is data, read with the same safe loader and
limits as a question file, and collecting a folder passes it over instead of failing on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_emergent.errors import QuestionError
from pytest_emergent.spec.validate import _Ctx, _got, _judge_prompts, _yaml_message
from pytest_emergent.spec.yaml_loader import read_bounded, safe_load

#: file names recognised as judge-prompt files (beside question files, or in the folder above)
JUDGE_FILE_NAMES = ("judges.yaml", "judges.yml")


def is_judge_file(path: Path) -> bool:
    return path.name in JUDGE_FILE_NAMES


def read_judge_file(path: str | Path) -> Mapping[str, str]:
    """The metric -> prompt mapping of a judge-prompt file; `QuestionError` naming the file
    and metric when it is not one."""
    import yaml

    ctx = _Ctx(path, "judge prompts")
    try:
        text = read_bounded(path)
    except FileNotFoundError:
        raise QuestionError("judge-prompt file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionError(f"cannot read the judge-prompt file ({exc})", path=path) from None
    try:
        data: Any = safe_load(text)
    except yaml.YAMLError as exc:
        ctx.fail(_yaml_message(exc))
    if isinstance(data, dict) and set(data) == {"judge_prompts"}:
        data = data["judge_prompts"]
    if not isinstance(data, dict) or not data:
        ctx.fail("a judge-prompt file must be a non-empty mapping of metric name to prompt "
                 f"text (or {{judge_prompts: {{...}}}}), got {_got(data)}")
    return _judge_prompts(data, ctx)


def find_judge_file(question_file: Path) -> Path | None:
    """A `judges.yaml` beside `question_file`, else in the folder above; None if neither."""
    for folder in (question_file.parent, question_file.parent.parent):
        for name in JUDGE_FILE_NAMES:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


class JudgePromptSource:
    """Where a file's questions without judge prompts get theirs: read once, on first need,
    so a broken `judges.yaml` only matters to a file that relies on it."""

    def __init__(self, question_file: Path, explicit: Path | None = None) -> None:
        self.question_file = question_file
        self.explicit = explicit
        self._prompts: Mapping[str, str] | None = None

    def prompts(self) -> Mapping[str, str] | None:
        """The judge prompts, or None when no judge-prompt file applies."""
        if self._prompts is None:
            path = self.explicit or find_judge_file(self.question_file)
            if path is None:
                return None
            self._prompts = read_judge_file(path)
        return self._prompts
