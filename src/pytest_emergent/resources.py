"""Files the package ships or finds beside itself: shipped data, bundled question sets,
fine-tune datasets. One place, so that no module counts `parents[N]` from its own path.

Imports nothing else of the package.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
#: probe and contrast heads, the shipped judge agreement figures
DATA_DIR = PACKAGE_DIR / "data"
#: the bundled question sets (package data; `evals/` in a checkout links here)
SUITES_DIR = DATA_DIR / "evals"
#: the shipped fine-tune datasets and their data cards
FINETUNE_DIR = DATA_DIR / "finetune"
#: the labelled calibration set of the judge (`--em-calibrate-judge`'s default)
CALIBRATION_SET = DATA_DIR / "calibration" / "core.yaml"


def _set_dirs() -> list[Path]:
    """Where question sets are looked for: $PYTEST_EMERGENT_EVALS first, then the bundled."""
    extra = os.environ.get("PYTEST_EMERGENT_EVALS", "").split(os.pathsep)
    return [*(Path(p) for p in extra if p), SUITES_DIR]


def list_sets() -> dict[str, Path]:
    """Every findable question set by name (the first directory that has a name wins)."""
    found: dict[str, Path] = {}
    for directory in _set_dirs():
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            found.setdefault(path.stem, path)
    return found


def find_set(name: str) -> Path:
    """The YAML file of a bundled question set (`core` -> data/evals/core.yaml)."""
    sets = list_sets()
    if name in sets:
        return sets[name]
    known = ", ".join(sets) or "none"
    raise FileNotFoundError(
        f"no bundled question set {name!r} (known: {known}); looked in "
        f"{', '.join(str(d) for d in _set_dirs())}; add a directory with "
        "PYTEST_EMERGENT_EVALS, or pass a question file's path instead"
    )


def fixtures_dir() -> Path:
    """Where the shipped fine-tune datasets live (package data)."""
    return FINETUNE_DIR


def fitted_fingerprint(kind: str, base_fingerprint: str, heads_digest: str) -> str:
    """The fingerprint of a judge of fitted heads (`kind` ``contrast`` or ``probe``) over a
    base model: what keys its judgments in the cache."""
    blob = f"{base_fingerprint}\x00{heads_digest}".encode()
    return f"{kind}-" + hashlib.sha256(blob).hexdigest()[:16]


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
