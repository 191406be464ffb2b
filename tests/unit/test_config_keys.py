"""Every stage config refuses an unknown key, naming it and the valid ones."""

from __future__ import annotations

import pytest

from sumcircuit.analysis.diff import DiffConfig
from sumcircuit.analysis.patching import PairConfig
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.evaluate import EvaluateConfig
from sumcircuit.training.config import FinetuneConfig


@pytest.mark.parametrize(
    "cls,valid",
    [
        (DiffConfig, "limit"),
        (PairConfig, "base"),
        (EvaluateConfig, "num_beams"),
        (FinetuneConfig, "rank"),
    ],
)
def test_unknown_key_is_named_with_the_valid_ones(cls, valid) -> None:
    with pytest.raises(
        SumcircuitError, match=rf"unknown key\(s\) \['limitt'\] in .*valid: .*{valid}"
    ):
        cls.from_dict({"limitt": 3})
