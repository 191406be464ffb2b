"""Every stage config takes its data options from one dataclass: one field, one default, one help
text and one check, whatever the stage; the model-pair options likewise from ``PairConfig``."""

from __future__ import annotations

import json
from dataclasses import Field, fields

import pytest

from sumcircuit.analysis.causal.attribute import AttributeConfig
from sumcircuit.analysis.causal.exact import ExactConfig
from sumcircuit.analysis.causal.faithfulness import FaithfulnessConfig
from sumcircuit.analysis.causal.patching import PairConfig, PatchingConfig
from sumcircuit.analysis.causal.validate import ValidateConfig
from sumcircuit.analysis.diff.run import DiffConfig
from sumcircuit.data.batching import prepare_for
from sumcircuit.data.options import DataOptions, SplitDataOptions, scoring_split
from sumcircuit.errors import ConfigError
from sumcircuit.evaluation.evaluate import EvaluateConfig
from sumcircuit.study.config import AttributeStudyConfig, LoraStudyConfig
from sumcircuit.training.config import FinetuneConfig

PAIR_STAGES = (PairConfig, DiffConfig, ExactConfig, FaithfulnessConfig, ValidateConfig)
PAIR_STAGES += (AttributeConfig, AttributeStudyConfig)
SPLIT_STAGES = (*PAIR_STAGES, EvaluateConfig)
STAGES = (*SPLIT_STAGES, FinetuneConfig, LoraStudyConfig)
NEEDS = {cls: {"finetuned": "ft"} for cls in PAIR_STAGES}


def _fields(cls: type) -> dict[str, Field]:
    return {f.name: f for f in fields(cls)}


SCORING_STAGES = (FaithfulnessConfig, EvaluateConfig)


@pytest.mark.parametrize("cls", STAGES, ids=lambda c: c.__name__)
def test_the_data_fields_are_the_shared_ones(cls: type) -> None:
    """The same Field object: one default and one help text (so one flag text) everywhere; a
    stage that scores reads the test split by default (one field definition, scoring_split)."""
    shared = _fields(SplitDataOptions if cls in SPLIT_STAGES else DataOptions)
    own = _fields(cls)
    scoring = cls in SCORING_STAGES
    assert all(
        own[name] is field for name, field in shared.items() if not (scoring and name == "split")
    )
    if cls in SPLIT_STAGES:
        split = _fields(cls)["split"]
        want = scoring_split() if scoring else shared["split"]
        assert (split.default, split.metadata["help"]) == (want.default, want.metadata["help"])
        assert split.default == ("test" if scoring else "validation")


def test_finetuning_takes_no_split() -> None:
    """It reads the train split (and validation for its checks): a --split would do nothing."""
    assert "split" not in _fields(FinetuneConfig)


@pytest.mark.parametrize("cls", PAIR_STAGES, ids=lambda c: c.__name__)
def test_the_pair_fields_are_pair_configs(cls: type) -> None:
    names = ("base", "finetuned", "dtype", "device", "seed", "n_boot")
    own, pair = _fields(cls), _fields(PairConfig)
    assert all(own[name] is pair[name] for name in names)
    if cls not in (PairConfig, DiffConfig):  # the patching stages: one min_delta
        assert own["min_delta"] is _fields(PatchingConfig)["min_delta"]


@pytest.mark.parametrize("cls", STAGES, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("key", "value"), [("limit", 0), ("batch_size", 0), ("max_length", 0), ("template", "x")]
)
def test_one_check_of_the_data_options(cls: type, key: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        cls(**NEEDS.get(cls, {}), **{key: value})
    assert err.value.field == key


def test_the_stages_read_the_named_columns(tmp_path, gpt2_tok) -> None:
    path = tmp_path / "pairs.jsonl"
    records = [
        {"id": f"d{i}", "split": "train", "text": f"Document number {i}.", "tldr": f"Doc {i}."}
        for i in (1, 2)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    columns = {"data": str(path), "document_field": "text", "summary_field": "tldr"}
    for config in (DiffConfig(finetuned="ft", **columns), FinetuneConfig(**columns)):
        prepared = prepare_for(config, gpt2_tok, split="train")
        assert [e.summary for e in prepared.examples] == ["Doc 1.", "Doc 2."]
