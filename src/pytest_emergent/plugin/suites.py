"""Bundled question sets on the command line: ``--em-suite core`` collects a set shipped in
the package (no checkout needed), ``--em-list-suites`` shows them.

A suite given without paths replaces the default collection (testpaths or the current
directory); given with paths, it is collected as well as them.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def suite_paths(text: str, name: str) -> tuple[Path, ...]:
    """`core` or `core,medical` -> their YAML files; an unknown name is a usage error."""
    from pytest_emergent.resources import find_set

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise pytest.UsageError(f"{name}: name a bundled question set, e.g. core "
                                "(--em-list-suites shows them)")
    try:
        return tuple(find_set(n) for n in dict.fromkeys(names))
    except FileNotFoundError as exc:
        raise pytest.UsageError(f"{name}: {exc}") from None


def add_suites(config: pytest.Config, paths: tuple[Path, ...]) -> None:
    """Collect `paths`: instead of the default collection, or after the given arguments."""
    if not paths:
        return
    given = config.args_source == pytest.Config.ArgsSource.ARGS
    chosen = [str(p) for p in paths]
    config.args[:] = [*config.args, *chosen] if given else chosen


def suite_lines() -> list[str]:
    """One line per findable question set: name, questions, path."""
    from pytest_emergent.errors import QuestionError
    from pytest_emergent.resources import list_sets
    from pytest_emergent.spec import load_file

    lines = ["bundled question sets (pytest --em-suite NAME):"]
    for set_name, path in list_sets().items():
        try:
            count = f"{len(load_file(path).questions)} items"
        except QuestionError as exc:
            count = f"does not load: {exc}"
        lines.append(f"  {set_name:<16} {count:<10} {path}")
    if len(lines) == 1:
        lines.append("  none found")
    return lines
