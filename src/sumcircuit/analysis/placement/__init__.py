"""Where to adapt: the placement curve.

For each locator and size k, LoRA on its top-k layers, beside random k-layer sets, standard LoRA
on every layer and the base model, all scored by the held-out log-likelihood per reference token
on documents no locator and no training run read (see :mod:`.run`)."""

from sumcircuit.analysis.placement.config import PlacementConfig
from sumcircuit.analysis.placement.result import PlacementResult
from sumcircuit.analysis.placement.run import placement

__all__ = ["PlacementConfig", "PlacementResult", "placement"]
