"""Seeded statistics for per-document results, every stage's and the study's.

- :mod:`~sumcircuit.stats.bootstrap`: the resampling scheme and its CIs — means, ratios of
  means, paired differences, the fraction of items below zero, recovered fractions, top-k
  support;
- :mod:`~sumcircuit.stats.significance`: the paired Wilcoxon test and Benjamini–Hochberg q-values;
- :mod:`~sumcircuit.stats.controls`: random component sets and a set's percentile among them;
- :mod:`~sumcircuit.stats.power`: minimum detectable effects and the Wilson interval.

Import from here: ``from sumcircuit.stats import bootstrap_ci``.
"""

from sumcircuit.stats.bootstrap import (
    PairedDiff,
    bootstrap_ci,
    fraction_negative_ci,
    gain_check,
    paired_bootstrap_diff,
    ratio_bootstrap_ci,
    recovered,
    resample_counts,
    topk_bootstrap,
)
from sumcircuit.stats.controls import percentile_among, percentile_ci, percentile_rank, random_sets
from sumcircuit.stats.power import (
    binomial_power,
    min_detectable_effect,
    n_to_detect,
    paired_power,
    wilson_interval,
)
from sumcircuit.stats.significance import bh_qvalues, wilcoxon_p

__all__ = [
    "PairedDiff",
    "bh_qvalues",
    "binomial_power",
    "bootstrap_ci",
    "fraction_negative_ci",
    "gain_check",
    "min_detectable_effect",
    "n_to_detect",
    "paired_bootstrap_diff",
    "paired_power",
    "percentile_among",
    "percentile_ci",
    "percentile_rank",
    "random_sets",
    "ratio_bootstrap_ci",
    "recovered",
    "resample_counts",
    "topk_bootstrap",
    "wilcoxon_p",
    "wilson_interval",
]
