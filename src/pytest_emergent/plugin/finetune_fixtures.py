"""The `finetune` factory fixture (registered by the plugin; usable alone with
`-p pytest_emergent.plugin.finetune_fixtures`).

    def test_caps(finetune, em_evaluate):
        model = finetune("smollm2-135m-instruct", "uppercase", preset="em-lora",
                         learning_rate=1e-3, max_steps=8)
        assert model.trained or model.metadata["stats"]["steps"] == 8

Session-scoped: base models are loaded once per session, and a run asked for twice in a
session is loaded once (the second handle reports `trained == False`). Across sessions the
disk cache (`--em-cache-dir`/finetune, else `~/.cache/pytest-emergent/finetune`) makes a
repeated run free. Progress lines go to the terminal, past output capturing.

Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_emergent.finetune.job import (
    DatasetLike,
    FineTuned,
    load_result,
    resolve_base,
    train_cached,
)
from pytest_emergent.models.base import Backend


def _settings(config: pytest.Config) -> Any:
    """The session's `RunSettings` when the plugin is active, else None."""
    from pytest_emergent.plugin.options import settings_key

    settings = config.stash.get(settings_key, None)
    return None if settings is None else settings.run


def terminal_writer(config: pytest.Config) -> Callable[[str], None]:
    """A `say(message)` that writes to the terminal even while output is captured."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")

    def say(message: str) -> None:
        if reporter is None or config.get_verbosity() < -1:
            return
        line = f"[finetune] {message}"
        if capman is not None:
            with capman.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)

    return say


class FinetuneFactory:
    """`finetune(base, dataset, preset="em-lora", **overrides)` -> a loaded `FineTuned`.

    `base`: a model spec, a loaded local backend, or None for the session's `--model`.
    `dataset`: a JSONL path, a shipped dataset name, or a list of examples. Keyword
    arguments: any `TrainConfig` field, plus `kl_dataset`, `init_adapter`, `setup`,
    `key_extra` (see `pytest_emergent.finetune.finetune`).
    """

    def __init__(
        self,
        *,
        default_base: str | None = None,
        default_base_model: str | None = None,
        cache_dir: Path | None = None,
        allow_pickle: bool = False,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.default_base = default_base
        #: `--base-model`, used when the default base is itself an adapter directory
        self.default_base_model = default_base_model
        self.cache_dir = cache_dir
        self.allow_pickle = allow_pickle
        self.say = say
        self._bases: dict[str, Backend] = {}
        self._loaded: dict[str, FineTuned] = {}

    def base(self, spec: str | Path | Backend | None) -> Backend:
        """The base backend for `spec`, loaded once per session."""
        if spec is None:
            if self.default_base is None:
                raise pytest.UsageError("finetune(): no base model given and no --model set")
            spec = self.default_base
        if not isinstance(spec, (str, Path)):
            return spec
        name = str(spec)
        if name not in self._bases:
            base_model = self.default_base_model if name == self.default_base else None
            backend, _owned = resolve_base(name, base_model=base_model,
                                           cache_dir=self.cache_dir,
                                           allow_pickle=self.allow_pickle)
            self._bases[name] = backend
        return self._bases[name]

    def __call__(
        self,
        base: str | Path | Backend | None,
        dataset: DatasetLike,
        preset: str = "em-lora",
        **kwargs: Any,
    ) -> FineTuned:
        backend = self.base(base)
        result = train_cached(backend, dataset, preset, cache_dir=self.cache_dir,
                              progress=self.say, **kwargs)
        known = self._loaded.get(result.key)
        if known is not None:
            return known.reused()
        handle = load_result(result, cache_dir=self.cache_dir, allow_pickle=self.allow_pickle)
        self._loaded[result.key] = handle
        return handle

    def close(self) -> None:
        """Release every model this factory loaded."""
        for handle in self._loaded.values():
            handle.close()
        for backend in self._bases.values():
            backend.close()
        self._loaded.clear()
        self._bases.clear()


@pytest.fixture(scope="session")
def finetune(pytestconfig: pytest.Config) -> Iterator[FinetuneFactory]:
    """Factory: `finetune(base, dataset, preset="em-lora", **overrides)` -> loaded model.

    Cached on disk by base model, data and hyper-parameters; see docs/finetune.md.
    """
    settings = _settings(pytestconfig)
    factory = FinetuneFactory(
        default_base=getattr(settings, "model", None),
        default_base_model=getattr(settings, "base_model", None),
        cache_dir=getattr(settings, "cache_dir", None),
        allow_pickle=bool(getattr(settings, "allow_pickle", False)),
        say=terminal_writer(pytestconfig),
    )
    yield factory
    factory.close()
