"""The package's public face: every name in `__all__` resolves, lazily, without heavy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest_emergent


def test_all_lists_exactly_the_eager_and_lazy_names() -> None:
    eager = {"EmergentError", "__version__", "register_scorer", "registered_scorers"}
    assert set(pytest_emergent.__all__) == eager | set(pytest_emergent._LAZY)
    assert len(pytest_emergent.__all__) == len(set(pytest_emergent.__all__))


def test_every_public_name_resolves_from_the_module_that_defines_it() -> None:
    for name, module in pytest_emergent._LAZY.items():
        value = getattr(pytest_emergent, name)
        assert value is getattr(sys.modules[module], name), name
        # a public name must not be a subpackage's too (the import system would rebind it)
        assert not isinstance(value, type(sys)), name


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        pytest_emergent.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name resolved")


def test_importing_the_public_face_stays_light() -> None:
    """Resolving every public name imports none of the heavy dependencies."""
    code = (
        "import sys, pytest_emergent as p\n"
        "[getattr(p, n) for n in p.__all__]\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'openai', 'inspect_ai')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
