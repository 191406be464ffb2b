"""The placement curve's arithmetic (gap closed, percentile, CIs, Spearman) on fixed
log-likelihoods, its documents' disjointness, its config, and the per-layer ranks of the
circuit-rank arm (parameters matched to standard LoRA exactly)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sumcircuit.analysis.locate.registry import Ranking
from sumcircuit.analysis.placement.config import PlacementConfig
from sumcircuit.analysis.placement.documents import Slice, check_disjoint, outcome_slice, readers
from sumcircuit.analysis.placement.gap import CurveStats, spearman
from sumcircuit.analysis.placement.result import run_key
from sumcircuit.data.examples import Dataset, Example
from sumcircuit.errors import SumcircuitError
from sumcircuit.models.archs import Arch
from sumcircuit.models.loader import LoadedModel
from sumcircuit.models.tiny import tiny_model
from sumcircuit.stats import bootstrap_ci
from sumcircuit.training.adapters import count_trainable, reallocated_ranks
from sumcircuit.training.config import FinetuneConfig
from sumcircuit.training.select import select_adapters

# documents x runs: the locator's run, two random runs, standard (every layer)
LOC = [-2.0, -1.0, -3.0, -2.0]  # mean -2.0
R1 = [-3.0, -2.0, -4.0, -3.0]  # mean -3.0
R2 = [-2.0, -2.0, -2.0, -2.0]  # mean -2.0
ALL = [-1.0, -0.5, -1.5, -1.0]  # mean -1.0


def test_gap_closed_and_percentile_match_hand_computed_values() -> None:
    stats = CurveStats(np.column_stack([LOC, R1, R2, ALL]), n_boot=500, seed=3)
    gap, (lo, hi) = stats.gap_closed(0, [1, 2], 3)
    # random mean -2.5: (-2.0 + 2.5) / (-1.0 + 2.5) = 0.5 / 1.5
    assert gap == pytest.approx(1 / 3)
    assert lo <= gap <= hi
    # one random run below (-3.0), one tied (-2.0): (1 + 0.5) / 2
    assert stats.percentile(0, [1, 2]) == 75.0
    assert stats.percentile(3, [1, 2]) == 100.0 and stats.percentile(1, [1, 2]) == 25.0
    # the mean's CI is the same resampling as every other CI of the project
    mean, ci = stats.loglik(0)
    assert mean == -2.0 and ci == pytest.approx(
        list(bootstrap_ci(np.array(LOC), n_boot=500, seed=3))
    )


def test_gap_closed_ci_resamples_documents_jointly() -> None:
    """An independent gather of the same resampled documents gives the same interval; a gap that
    is the same on every document has a CI of width 0 (only joint resampling gives that)."""
    values = np.column_stack([LOC, R1, R2, ALL])
    stats = CurveStats(values, n_boot=400, seed=7)
    idx = np.random.default_rng(7).integers(0, 4, size=(400, 4))
    means = values[idx].mean(axis=1)  # (n_boot, runs)
    band = means[:, 1:3].mean(axis=1)
    ratio = (means[:, 0] - band) / (means[:, 3] - band)
    ratio = ratio[np.isfinite(ratio)]
    assert stats.gap_closed(0, [1, 2], 3)[1] == pytest.approx(
        list(np.quantile(ratio, [0.025, 0.975]))
    )

    x = np.array([-3.0, -1.0, -2.5, -4.0, -2.0])
    constant = CurveStats(np.column_stack([x + 0.25, x, x, x + 1.0]), n_boot=300, seed=0)
    gap, ci = constant.gap_closed(0, [1, 2], 3)
    assert gap == pytest.approx(0.25) and ci == pytest.approx([0.25, 0.25])


def test_curve_stats_refuse_bad_input() -> None:
    with pytest.raises(SumcircuitError, match="NaN or infinite"):
        CurveStats(np.array([[0.0, np.nan]]), n_boot=10, seed=0)
    with pytest.raises(SumcircuitError, match="at least one random run"):
        CurveStats(np.zeros((2, 2)), n_boot=10, seed=0).gap_closed(0, [], 1)


def test_spearman_and_run_keys() -> None:
    truth = pd.Series({0: -2.0, 1: -1.0, 2: -3.0, 3: -1.5})
    assert spearman(pd.Series({0: 2.0, 1: 4.0, 2: 1.0, 3: 3.0}), truth) == pytest.approx(1.0)
    assert spearman(pd.Series({0: 4.0, 1: 1.0, 2: 9.0, 3: 2.0}), truth) == pytest.approx(-1.0)
    assert np.isnan(spearman(pd.Series({0: 1.0, 1: 1.0}), truth))  # a constant ranking
    assert run_key(None, 8) == "all-r8" and run_key([11, 2, 5], 44) == "layers-2-5-11-r44"


def _dataset() -> Dataset:
    def split(name: str, n: int) -> list[Example]:
        return [Example(f"{name}{i}", "doc", "sum") for i in range(n)]

    splits = {"train": split("t", 10), "validation": split("v", 8), "test": split("x", 4)}
    return Dataset("toy", splits, checksum="0", source="toy")


def _ranking(name: str, split: str | None, limit: int | None) -> Ranking:
    return Ranking(name, pd.Series([1.0, 0.0]), split=split, limit=limit, directory="d")


def test_outcome_starts_past_every_reader_of_its_split() -> None:
    config = PlacementConfig(limit=6, eval_limit=2)
    read = readers(
        config,
        [
            _ranking("kl", "validation", 3),
            _ranking("atp", "validation", 5),
            _ranking("rgn", "train", 4),
        ],
    )
    outcome = outcome_slice(config, read)
    assert (outcome.split, outcome.offset, outcome.limit) == ("validation", 5, 2)
    assert (
        outcome.ids(_dataset()) == ["v5", "v6"] and outcome.describe() == "validation documents 5-6"
    )
    check_disjoint(outcome.ids(_dataset()), outcome, read, _dataset())  # nothing shared


def test_overlapping_outcome_documents_are_refused_in_one_sentence() -> None:
    dataset = _dataset()
    config = PlacementConfig(limit=6, eval_offset=2, eval_limit=2)
    read = readers(config, [_ranking("kl", "validation", 3)])
    outcome = outcome_slice(config, read)
    with pytest.raises(SumcircuitError) as err:
        check_disjoint(outcome.ids(dataset), outcome, read, dataset)
    message = str(err.value)
    assert message.count(".") <= 2 and "\n" not in message
    assert "include 1 that the kl locator read (validation documents 0-2, e.g. id 'v2')" in message
    # training pairs read as outcome documents
    train = PlacementConfig(limit=6, eval_split="train", eval_offset=4, eval_limit=3)
    read = readers(train, [])
    with pytest.raises(SumcircuitError, match="include 2 that the training runs read"):
        check_disjoint(
            outcome_slice(train, read).ids(dataset), outcome_slice(train, read), read, dataset
        )
    # a reader of the whole split leaves nothing to score
    whole = PlacementConfig(limit=None, eval_split="train")
    with pytest.raises(SumcircuitError, match="the training runs read every train document"):
        outcome_slice(whole, readers(whole, []))
    # the same ids in a reserved split (a local file with shared ids) are refused too
    shared = Dataset(
        "toy",
        {"validation": [Example("x1", "d", "s")], "test": [Example("x1", "d", "s")]},
        "0",
        "toy",
    )
    read = [Slice("the judged models (reserved)", "test")]
    with pytest.raises(
        SumcircuitError, match=r"the judged models \(reserved\) read \(every test document"
    ):
        check_disjoint(["x1"], Slice("the outcome", "validation"), read, shared)


def test_placement_config_refuses_bad_values() -> None:
    with pytest.raises(SumcircuitError, match="--eval-split 'test' is reserved for judging models"):
        PlacementConfig(eval_split="test")
    with pytest.raises(SumcircuitError, match="unknown locator 'nope'"):
        PlacementConfig(locators=["nope"])
    with pytest.raises(SumcircuitError, match="--sizes is empty"):
        PlacementConfig(sizes=[])
    with pytest.raises(SumcircuitError, match="--random-sets must be at least 1"):
        PlacementConfig(random_sets=0)
    with pytest.raises(
        SumcircuitError, match="no source gives the locator atp; pass --sources atp=DIR"
    ):
        PlacementConfig(locators=["atp"]).source_of("atp")
    config = PlacementConfig(diff="d", sources={"atp": "a"}, sizes=[8, 1, 3, 3])
    assert config.sizes == [1, 3, 8]
    assert config.wanted()[:6] == ["kl", "js", "entropy", "weight", "actmag", "atp"]
    assert config.wanted()[-3:] == ["first-k", "last-k", "evenly-spaced"]
    run = config.training([2, 5], 16, "o")
    assert (run.layers, run.rank, run.alpha, run.val_limit, run.method) == (
        [2, 5],
        16,
        32.0,
        0,
        "lora",
    )


def test_reallocated_ranks_sum_to_standard_exactly() -> None:
    # smollm2-135m: 30 layers, a 3-layer circuit, rank 8 -> 4 elsewhere, 44 on the circuit
    assert reallocated_ranks(30, [5, 15, 21], 8, 4) == {5: 44, 15: 44, 21: 44}
    uneven = reallocated_ranks(30, [0, 1, 2, 3, 4, 5, 6], 8, 4)  # 148 over 7: 22 + 6 x 21
    assert list(uneven.values()) == [22] + [21] * 6
    assert sum(uneven.values()) + 4 * 23 == 8 * 30
    with pytest.raises(SumcircuitError, match="lower rank must lie in 1..7"):
        reallocated_ranks(30, [1], 8, 8)
    with pytest.raises(SumcircuitError, match="circuit of 1 to 29 layers"):
        reallocated_ranks(30, list(range(30)), 8, 4)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_circuit_rank_trains_exactly_standards_parameter_count(arch: str) -> None:
    """Every layer at rank 4, layer 1 at 20 (4 layers, rank 8: 32 = 3 x 4 + 20): the trainable
    count equals standard LoRA's exactly, and alpha/rank stays 2 on every module."""

    def adapted(**options) -> tuple[int, object]:
        model = tiny_model(arch)
        loaded = LoadedModel(model=model, tokenizer=None, arch=Arch.from_model(model))
        result = select_adapters(FinetuneConfig(**options), loaded)
        return count_trainable(result.model), result

    standard, _ = adapted(rank=8)
    ranks = reallocated_ranks(4, [1], 8, 4)
    assert ranks == {1: 20}
    matched, result = adapted(rank=4, alpha=8.0, layer_ranks=ranks)
    assert matched == standard == result.budget["params"]
    for name, module in result.model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            r = module.lora_A["default"].weight.shape[0]
            assert r == (20 if ".1." in name else 4) and module.scaling["default"] == 2.0


def test_layer_ranks_options() -> None:
    assert "layer_ranks" not in FinetuneConfig().to_dict()  # earlier runs keep their hash
    config = FinetuneConfig(layers=[1, 2], layer_ranks={"2": "12"})
    assert config.layer_ranks == {2: 12} and config.to_dict()["layer_ranks"] == {2: 12}
    with pytest.raises(SumcircuitError, match="names layer 3, which --layers does not adapt"):
        FinetuneConfig(layers=[1, 2], layer_ranks={3: 12})
    with pytest.raises(SumcircuitError, match="not with --heads, --circuit or --equal-budget"):
        FinetuneConfig(heads=[(1, 0)], layer_ranks={1: 12})
    with pytest.raises(SumcircuitError, match="ranks from 1, got 1=0"):
        FinetuneConfig(layer_ranks={1: 0})
