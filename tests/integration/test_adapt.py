"""``sumcircuit adapt`` end to end on a tiny model and the shipped XSum sample: every adaptation
locator ranks the layers, the probe trained, only training pairs were read, and ``locate`` ranks
by an adaptation score."""

import math

import pytest

from sumcircuit.analysis.adapt.result import PARTS, AdaptResult
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.analysis.locate.registry import locator, names
from sumcircuit.cli import main
from sumcircuit.data.examples import Dataset
from sumcircuit.data.sources import load_dataset
from sumcircuit.models.tiny import PEAKED_STD, save_tiny

pytestmark = pytest.mark.usefixtures("one_thread")
L, LIMIT, BATCH, STEPS = 2, 4, 2, 3
SIZES = dict(n_layers=L, n_heads=4, n_kv_heads=2, hidden=32, init_std=PEAKED_STD)


@pytest.fixture(scope="module")
def run(tmp_path_factory, xsum_sample):
    root = tmp_path_factory.mktemp("adapt")
    base = save_tiny("llama", root / "base", seed=0, **SIZES)
    args = ["--model", str(base), "--data", xsum_sample, "--max-length", "96"]
    args += ["--limit", str(LIMIT), "--batch-size", str(BATCH), "--probe-steps", str(STEPS)]
    args += ["--no-progress", "--out", str(root / "adapt")]
    split = Dataset.split
    read: list[str] = []

    def train_only(self, name):
        read.append(name)
        if name != "train":  # a scoring document would leak into where-to-adapt
            raise AssertionError(f"adapt read the {name} split")
        return split(self, name)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Dataset, "split", train_only)
        assert main(["adapt", *args]) == 0
    assert read and set(read) == {"train"}
    return root, base, args, xsum_sample


def test_every_adaptation_locator_ranks_every_layer(run):
    root, *_ = run
    result = AdaptResult.load(root / "adapt")
    assert result.parts == list(PARTS) and result.n_layers == L
    for name in names(purpose="adapt"):
        ranking = locator(name).rank("layer", root / "adapt")
        assert len(ranking.scores) == L
        assert all(math.isfinite(v) for v in ranking.scores)
        assert sorted(ranking.top(L)) == list(range(L))
        assert (ranking.split, ranking.limit) == ("train", STEPS * BATCH)
    # LoRA's B starts at zero: a positive update norm and activation change were learned
    assert (result.scores("probe-norm") > 0).all() and (result.scores("probe-act") > 0).all()
    assert (result.scores("rgn") > 0).all() and (result.scores("grad-energy") > 0).all()
    matrices = result.matrices()
    assert len(matrices) == 4 * L and set(matrices["kind"]) == {
        f"self_attn.{p}_proj" for p in "qkvo"
    }


def test_the_probe_trained_into_the_stage_folder(run):
    root, *_ = run
    result = AdaptResult.load(root / "adapt")
    assert result.probe["steps"] == STEPS and len(result.probe["losses"]) == STEPS
    assert (result.probe["rank"], result.probe["alpha"]) == (8, 16.0)
    assert (root / "adapt" / result.probe["directory"] / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["adapt", "base"]  # nothing elsewhere


def test_only_training_pairs_were_read_and_recorded(run):
    root, base, _, data = run
    result = AdaptResult.load(root / "adapt")
    train = [e.id for e in load_dataset(data).split("train")]
    assert result.doc_ids["gradients"] == train[:LIMIT]
    assert result.doc_ids["probe"] == train[: STEPS * BATCH]
    assert result.documents() <= set(train)
    data_record = result.provenance["data"]
    assert data_record["split"] == "train" and data_record["checksum"]
    assert result.provenance["models"]["base"]["name"] == str(base)
    assert "finetuned" not in result.provenance["models"]


def test_other_splits_are_refused_in_one_sentence(run, capsys):
    root, _, args, _ = run
    capsys.readouterr()
    assert main(["adapt", *args[:-1], str(root / "x"), "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "adapt reads the train split only, not 'test'" in err and len(err.splitlines()) == 1
    assert not (root / "x").exists()


def test_locate_ranks_by_an_adaptation_score(run, tmp_path):
    root, base, _, data = run
    ft = save_tiny("llama", tmp_path / "ft", seed=1, **SIZES)
    pair = ["--base", str(base), "--finetuned", str(ft), "--data", data, "--limit", "4"]
    assert main(["diff", *pair, "--max-length", "96", "--out", str(tmp_path / "diff")]) == 0
    out = tmp_path / "circuit.json"
    argv = ["locate", "--diff", str(tmp_path / "diff"), "--score", "grad-energy", "--k", "1"]
    assert main([*argv, "--sources", f"grad-energy={root / 'adapt'}", "--out", str(out)]) == 0
    best = AdaptResult.load(root / "adapt").scores("grad-energy").idxmax()
    assert Circuit.load(out).layers == [best]
