"""FinetuneConfig validation, defaults and hashing."""

import pytest

from sumcircuit.errors import SumcircuitError
from sumcircuit.training.config import FinetuneConfig


def test_defaults_and_round_trip():
    config = FinetuneConfig(out="x", heads=[(3, 4), (2, 1)], rank=4)
    assert config.alpha == 8.0 and config.lr == 2e-4 and config.heads == [(2, 1), (3, 4)]
    again = FinetuneConfig.from_dict(config.to_dict())
    assert again == config and again.content_hash() == config.content_hash()
    assert FinetuneConfig(method="full").lr == 3e-5


def test_hash_ignores_where_and_how_but_not_what():
    base = FinetuneConfig(out="a")
    assert base.content_hash() == FinetuneConfig(out="b", resume=True, max_steps=3).content_hash()
    assert base.content_hash() != FinetuneConfig(out="a", rank=4).content_hash()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"rank": 0}, "--rank must be a positive"),
        ({"layers": [1], "heads": [(1, 1)]}, "at most one of"),
        ({"method": "full", "layers": [1]}, "use --method lora"),
        ({"equal_budget": True}, "needs a targeted run"),
        ({"targets": ("q", "x")}, "--targets"),
        ({"heads": [(0, 0)], "targets": ("q", "mlp")}, "the MLP has no heads"),
        ({"warmup": 1.5}, "--warmup"),
        ({"eval_points": -1}, "--eval-points"),
    ],
)
def test_bad_config_is_one_clear_sentence(kwargs, words):
    with pytest.raises(SumcircuitError, match=words):
        FinetuneConfig(**kwargs)
