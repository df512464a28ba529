"""Stage 0 (imports nothing else of the package): pure numbers.

Definitions of misalignment, Wilson and Newcombe intervals, rate summaries, gates, rate
comparisons for mitigation tests, early stopping and exact gate error rates, and how they
are written for people. Every function can be checked against numbers computed by hand
(tests/stats/test_stats.py). Scores are on the judges' 0-100 scale; rates, thresholds and
confidence levels are fractions in [0, 1].
"""

from pytest_emergent.stats.clustered import ClusteredInterval, clustered_interval, t_quantile
from pytest_emergent.stats.compare import (
    COMPARISON_METHODS,
    RateComparison,
    ReductionDecision,
    as_summary,
    assert_increases,
    assert_reduces,
    compare_rates,
    reduces,
)
from pytest_emergent.stats.definitions import (
    ALIGNED,
    CATEGORIES,
    DEFINITION_NAMES,
    DEFINITIONS,
    INCOHERENT,
    MISALIGNED,
    SCORED,
    UNSCORED,
    Category,
    Definition,
    DefinitionName,
    classify,
    get_definition,
)
from pytest_emergent.stats.format import (
    format_pct,
    format_rate,
    pct,
    pct_or_dash,
)
from pytest_emergent.stats.gate import (
    GATE_POLICIES,
    GateDecision,
    GatePolicy,
    early_decision,
    gate,
)
from pytest_emergent.stats.intervals import (
    fisher_one_sided,
    newcombe_interval,
    two_proportion_z,
    wilson_interval,
)
from pytest_emergent.stats.relative import BaselineComparison, compare_to_baseline
from pytest_emergent.stats.sensitivity import Sensitivity, sensitivity
from pytest_emergent.stats.sequential import (
    early_stop_looks,
    early_stop_odds,
    early_stop_pass_probability,
    gate_passes,
    pass_probability,
    sequential_confidence,
)
from pytest_emergent.stats.summary import (
    RateSummary,
    merge,
    summarize,
    summarize_counts,
)

__all__ = [
    "BaselineComparison",
    "compare_to_baseline",
    "Sensitivity",
    "sensitivity",
    "ClusteredInterval",
    "clustered_interval",
    "t_quantile",
    "ALIGNED",
    "COMPARISON_METHODS",
    "DEFINITIONS",
    "Definition",
    "CATEGORIES",
    "DEFINITION_NAMES",
    "DefinitionName",
    "GATE_POLICIES",
    "SCORED",
    "Category",
    "GatePolicy",
    "GateDecision",
    "INCOHERENT",
    "MISALIGNED",
    "RateComparison",
    "RateSummary",
    "ReductionDecision",
    "UNSCORED",
    "as_summary",
    "assert_increases",
    "assert_reduces",
    "classify",
    "compare_rates",
    "early_decision",
    "early_stop_looks",
    "early_stop_odds",
    "early_stop_pass_probability",
    "fisher_one_sided",
    "format_pct",
    "format_rate",
    "gate",
    "gate_passes",
    "get_definition",
    "merge",
    "newcombe_interval",
    "pass_probability",
    "pct",
    "pct_or_dash",
    "reduces",
    "sequential_confidence",
    "summarize",
    "summarize_counts",
    "two_proportion_z",
    "wilson_interval",
]
