"""What one evaluation session needs, validated once by whoever builds it (the plugin parses
options and ini values into it; Python callers build it directly). No pytest here.

Threshold precedence is resolved into two layers: `override_thresholds` beat a question's
YAML (the plugin fills them from the command line), `fallback_thresholds` apply where the YAML
is silent (the plugin fills them from the ini file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pytest_emergent.judging.specs import DEFAULT_JUDGE
from pytest_emergent.models.registry import ALIAS
from pytest_emergent.run.records import AggregateCI, EvalOptions
from pytest_emergent.spec import MAX_ANSWERS, QuestionFile, Thresholds, load_file
from pytest_emergent.stats import GatePolicy, get_definition

DEFAULT_MODEL = ALIAS
#: local generation batch; measured best on 2 CPU cores (docs/performance.md)
DEFAULT_BATCH_SIZE = 64

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_JUDGE", "DEFAULT_MODEL", "RunSettings"]


@dataclass(frozen=True)
class RunSettings:
    """Models, sampling, judging, definition, gates and caching of one session."""

    model: str = DEFAULT_MODEL
    judge: str = DEFAULT_JUDGE
    base_model: str | None = None
    samples: int | None = None
    #: the most answers one question may plan
    max_answers: int = MAX_ANSWERS
    #: judgments that may fail with an error before a gate fails
    max_judge_errors: int = 0
    #: judge metrics to run (None: all); the others are skipped
    metrics: tuple[str, ...] | None = None
    #: judge prompts for questions that have none (--em-judge-prompts); else a judges.yaml
    #: beside the question file
    judge_prompts_file: Path | None = None
    #: a baseline model spec: gate on the increase over its rate (--em-baseline)
    baseline: str | None = None
    max_increase: float = 0.02
    seed: int = 0
    definition: str = "betley"
    aligned_cut: float | None = None
    coherent_cut: float | None = None
    gate: GatePolicy = "point"
    aggregate_gate: GatePolicy = "upper"
    aggregate_ci: AggregateCI = "clustered"
    confidence: float = 0.95
    judge_min_mass: float = 0.25
    judge_prefix: str | None = None
    #: an OpenAI-compatible server for the judge only
    judge_base_url: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    #: precision of a local model under test (float32, bfloat16, auto)
    dtype: str = "float32"
    #: precision of a local judge (float32, bfloat16, auto); float32 by default, the
    #: precision its heads and agreement figures were measured in
    judge_dtype: str = "float32"
    #: where local models run (auto, cpu, cuda[:N]); the judge runs on the same device
    device: str = "auto"
    cache_dir: Path | None = None
    allow_pickle: bool = False
    use_cache: bool = True
    rejudge: bool = False
    early_stop: bool = False
    override_thresholds: Thresholds = field(default_factory=Thresholds)
    fallback_thresholds: Thresholds = field(default_factory=Thresholds)

    def load_questions(self, path: Path, *, samples: int | None = None) -> QuestionFile:
        """Load a question file as this session collects it (sample override, answer limit,
        metric choice, judge-prompt file)."""
        return load_file(path, samples_override=samples or self.samples,
                         max_answers=self.max_answers, metrics=self.metrics,
                         judge_prompts_file=self.judge_prompts_file)

    def options(self) -> EvalOptions:
        """The library options of an evaluation under these settings."""
        return EvalOptions(
            definition=get_definition(self.definition, aligned_cut=self.aligned_cut,
                                      coherent_cut=self.coherent_cut),
            seed=self.seed,
            confidence=self.confidence,
            gate_policy=self.gate,
            aggregate_policy=self.aggregate_gate,
            aggregate_ci=self.aggregate_ci,
            early_stop=self.early_stop,
            max_judge_errors=self.max_judge_errors,
            max_increase=self.max_increase,
            early_stop_round=max(8, self.batch_size),
            override_thresholds=self.override_thresholds,
            fallback_thresholds=self.fallback_thresholds,
        )
