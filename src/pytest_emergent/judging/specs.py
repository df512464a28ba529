"""Judge specs (`--judge`, and the same strings in Python) to judge backends and `Judge`s.

A judge spec is any model spec (models/registry.py) or one of the judge-only wrappers over a
local model: ``contrast:SPEC`` (the default) and ``probe:SPEC``. The wrappers live here, in
the judging stage, so the model registry below knows nothing of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_emergent.judging.judge import Judge
from pytest_emergent.models.base import Backend
from pytest_emergent.models.registry import ALIAS, resolve

#: the offline default judge: the embedded model read as a contrast judge (docs/judging.md §7)
DEFAULT_JUDGE = f"contrast:{ALIAS}"
_WRAPPERS = ("contrast:", "probe:")


def is_wrapper(spec: str) -> bool:
    return spec.strip().startswith(_WRAPPERS)


def resolve_judge(spec: str, *, cache_dir: Path | None = None, **options: Any) -> Backend:
    """The backend a judge spec names: a contrast or probe backend over the local model the
    rest of the spec names, else whatever `models.registry.resolve` makes of it."""
    text = spec.strip()
    if text.startswith("contrast:"):
        from pytest_emergent.judging.contrast import resolve_contrast

        target = text.removeprefix("contrast:")
        return resolve_contrast(target, resolve(target, cache_dir=cache_dir, **options),
                                cache_dir)
    if text.startswith("probe:"):
        from pytest_emergent.judging.probe import resolve_probe

        target = text.removeprefix("probe:")
        return resolve_probe(target, resolve(target, cache_dir=cache_dir, **options), cache_dir)
    return resolve(spec, cache_dir=cache_dir, **options)


def judge_for_spec(spec: str, backend: Any, *, min_mass: float = 0.25,
                   assistant_prefix: str | None = None) -> Judge:
    """The judge a `--judge` spec asks for: a `ContrastJudge` for ``contrast:...``, a
    `ProbeJudge` for ``probe:...``, else `Judge`."""
    text = spec.strip()
    if text.startswith("contrast:"):
        from pytest_emergent.judging.contrast import ContrastJudge

        return ContrastJudge(backend, min_mass=min_mass, assistant_prefix=assistant_prefix)
    if text.startswith("probe:"):
        from pytest_emergent.judging.probe import ProbeJudge

        return ProbeJudge(backend, min_mass=min_mass)
    return Judge(backend, min_mass=min_mass, assistant_prefix=assistant_prefix)
