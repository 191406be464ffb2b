"""The adaptation locators: where a low-rank update of the base model can lower the task loss,
read from a ``sumcircuit adapt`` result (:mod:`sumcircuit.analysis.adapt`).

They rank layers (higher: a better place for LoRA) but are not a circuit: the circuit is where
the fine-tune changed, and LoRA on it was measured to be no better than random layer sets. So
they are registered with ``purpose="adapt"`` and ``candidate=False``: ``faithfulness`` draws one
only when its directory is given (``--sources rgn=DIR``), ``locate --score faithful`` never picks
one, and the placement curve iterates over ``names(purpose="adapt")`` with ``Ranking.top(k)``.
"""

from __future__ import annotations

import pandas as pd

from sumcircuit.analysis.adapt.result import AdaptResult
from sumcircuit.analysis.locate.registry import SOURCE_LOADERS, Shape, register_locator
from sumcircuit.layout import RunLayout

SOURCE_LOADERS.update(adapt=AdaptResult.load)

_GRADIENTS = "one forward and backward pass of the base model per training batch"
_PROBE = "a short LoRA run on every layer (--probe-steps) and one forward pass per batch"
_LOCATORS = {
    "rgn": (_GRADIENTS, "mean relative gradient norm ‖∇W‖/‖W‖ (Auto-RGN), summed over targets"),
    "fisher": (_GRADIENTS, "empirical Fisher Σ g² of per-batch gradients, summed over targets"),
    "grad-energy": (
        _GRADIENTS,
        "Σ_{i≤r} σ_i² of the accumulated gradient (the loss drop a rank-r update can buy)",
    ),
    "probe-norm": (_PROBE, "‖ΔW‖ = s·‖B·A‖ of the all-layer LoRA probe, summed over targets"),
    "probe-act": (_PROBE, "mean ‖ΔW·x‖² over training tokens of the probe (LoRA-drop)"),
    "spectrum-snr": ("free: the weights' singular values", "Spectrum's SNR of the weights"),
}


def _adapt_scores(result: AdaptResult, level: str, shape: Shape, name: str) -> pd.Series:
    return result.scores(name)


for _name, (_cost, _help) in _LOCATORS.items():
    register_locator(
        _name,
        source="adapt",
        stage=RunLayout.ADAPT,
        cost=_cost,
        levels=("layer",),
        candidate=False,
        purpose="adapt",
        help=_help,
    )(_adapt_scores)
