"""Files the package ships or finds beside itself: shipped data, bundled question sets,
fine-tune datasets. One place, so that no module counts `parents[N]` from its own path.

Imports nothing else of the package.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
#: probe and contrast heads, the shipped judge agreement figures
DATA_DIR = PACKAGE_DIR / "data"
#: the repository root when running from a source checkout (src/pytest_emergent/..)
SOURCE_ROOT = PACKAGE_DIR.parents[1]

#: where bundled question sets are looked for, after $PYTEST_EMERGENT_EVALS
SET_DIRS = (DATA_DIR / "evals", SOURCE_ROOT / "evals")


def find_set(name: str) -> Path:
    """The YAML file of a bundled question set (`core` -> evals/core.yaml)."""
    dirs = [Path(p) for p in os.environ.get("PYTEST_EMERGENT_EVALS", "").split(os.pathsep) if p]
    for directory in [*dirs, *SET_DIRS]:
        for suffix in (".yaml", ".yml"):
            path = directory / f"{name}{suffix}"
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"no bundled question set {name!r}; looked in {[str(d) for d in [*dirs, *SET_DIRS]]} "
        "(set PYTEST_EMERGENT_EVALS, or use the `questions` task with -T file=PATH)"
    )


def fixtures_dir() -> Path:
    """Where the shipped fine-tune datasets live: the package's data/finetune folder when
    installed with them, else the repository's `fixtures/` folder."""
    for candidate in (DATA_DIR / "finetune", SOURCE_ROOT / "fixtures"):
        if candidate.is_dir():
            return candidate
    return SOURCE_ROOT / "fixtures"


def find_fitted(pattern: str, base_fingerprint: str, search: Sequence[Path]
                ) -> dict[str, Any] | None:
    """The first fitted-heads file (`pattern`, e.g. ``probe*.json``) in `search` whose
    `base_fingerprint` matches, as its dict; unreadable files are passed over; None if none."""
    for directory in search:
        for path in sorted(directory.glob(pattern)):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("base_fingerprint") == base_fingerprint:
                return data
    return None
