"""Every stage config refuses an unknown key, naming it and the valid ones."""

from __future__ import annotations

import pytest

from sumcircuit.analysis.causal.patching import PairConfig
from sumcircuit.analysis.diff.run import DiffConfig
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


def test_from_dict_coerces_values_to_the_field_types() -> None:
    config = FinetuneConfig.from_dict(
        {"epochs": "2", "lr": "1e-4", "heads": [[3, 1], [2, 0]], "targets": "q,v", "resume": "yes"}
    )
    assert config.epochs == 2 and config.lr == 1e-4 and config.resume is True
    assert config.heads == [(2, 0), (3, 1)] and config.targets == ("q", "v")
    assert EvaluateConfig.from_dict({"limit": None, "num_beams": 2.0}).num_beams == 2


@pytest.mark.parametrize(
    ("cls", "data", "words"),
    [
        (FinetuneConfig, {"epochs": "abc"}, r"^lora\.epochs must be an integer, got 'abc'$"),
        (FinetuneConfig, {"epochs": 0}, r"^lora\.epochs must be at least 1, got 0$"),
        (FinetuneConfig, {"lora_dropout": 1.0}, r"^lora\.lora_dropout must lie in \[0, 1\)"),
        (FinetuneConfig, {"resume": "maybe"}, r"^lora\.resume must be true or false"),
        (FinetuneConfig, {"method": "half"}, r"^unknown lora\.method 'half'; choose from full"),
        (FinetuneConfig, {"layers": [1, "x"]}, r"^lora\.layers must be a comma-separated list"),
        (EvaluateConfig, {"num_beams": 1.5}, r"^lora\.num_beams must be an integer, got 1\.5$"),
        (DiffConfig, {"finetuned": "ft", "dtype": "int8"}, r"^unknown lora\.dtype 'int8'"),
    ],
)
def test_a_bad_value_names_section_and_key(cls, data, words) -> None:
    with pytest.raises(SumcircuitError, match=words):
        cls.from_dict(data, section="lora")
