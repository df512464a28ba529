"""Fine-tuning on narrow chat datasets: LoRA, rank-1 LoRA and full, seeded and cached.

`finetune(base, dataset, preset="em-lora", **overrides)` returns a loaded model (a
`Backend`) whose adapter is cached under a hash of the base model, the data and every
hyper-parameter, so a second session trains nothing. Importing this package imports no torch;
the pytest fixture of the same name lives in `pytest_emergent.plugin.finetune_fixtures`.
See docs/finetune.md.
"""

from __future__ import annotations

from pytest_emergent.finetune.data import (
    ChatExample,
    Dataset,
    DatasetError,
    load_dataset,
    shipped_datasets,
)
from pytest_emergent.finetune.job import (
    FineTuned,
    FinetuneResult,
    finetune,
    load_result,
    train_cached,
)
from pytest_emergent.finetune.presets import (
    PRESETS,
    FinetuneConfigError,
    TrainConfig,
    make_config,
)

__all__ = [
    "PRESETS",
    "ChatExample",
    "Dataset",
    "DatasetError",
    "FineTuned",
    "FinetuneConfigError",
    "FinetuneResult",
    "TrainConfig",
    "finetune",
    "load_dataset",
    "load_result",
    "make_config",
    "shipped_datasets",
    "train_cached",
]
