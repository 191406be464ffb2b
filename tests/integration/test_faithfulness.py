"""``sumcircuit faithfulness`` on tiny models: curves for every locator, scored on documents
disjoint from the selection documents, random bands, areas, and the refusals."""

import json
import shutil

import numpy as np
import pytest
from test_diff_tiny import WORDS

from sumcircuit.analysis.causal.faithfulness import FaithfulnessResult, default_sizes
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.analysis.locate.registry import locator, names
from sumcircuit.cli import main
from sumcircuit.models.tiny import PEAKED_STD, save_tiny

L = 4


def _data(path, n_val=8, n_test=6):
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        for i in range(n_val + n_test):
            doc = " ".join(rng.choice(WORDS, size=14 + 3 * (i % 4)))
            summ = " ".join(rng.choice(WORDS, size=3 + i % 3))
            split = "validation" if i < n_val else "test"
            fh.write(json.dumps({"id": f"d{i}", "document": doc, "summary": summ, "split": split}))
            fh.write("\n")
    return str(path)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("faith")
    base = save_tiny("llama", root / "base", seed=0, n_layers=L, init_std=PEAKED_STD)
    ft = save_tiny("llama", root / "ft", seed=1, n_layers=L, init_std=PEAKED_STD)
    data = _data(root / "d.jsonl")
    pair = ["--base", str(base), "--finetuned", str(ft), "--data", data, "--n-boot", "200"]
    assert (
        main(["diff", *pair, "--split", "validation", "--limit", "5", "--out", f"{root}/diff"]) == 0
    )
    assert main(["attribute", *pair, "--split", "validation", "--out", f"{root}/att"]) == 0
    return root, pair


def test_curves_of_every_locator_on_disjoint_documents(sources, capsys) -> None:
    root, pair = sources
    argv = ["faithfulness", *pair, "--diff", f"{root}/diff", "--sources", f"atp={root}/att"]
    assert main([*argv, "--controls", "5", "--out", f"{root}/f"]) == 0
    result = FaithfulnessResult.load(root / "f")
    baselines = {"first-k", "last-k", "evenly-spaced"}
    assert set(result.areas) == {"kl", "js", "entropy", "weight", "actmag", "atp"} | baselines
    assert result.sources["last-k"] == {"locator": "last-k", "directory": None}
    # the baselines read no document: the selection documents are the diff's and atp's alone
    assert {d["split"] for d in result.documents["selection"]} == {"validation"}
    assert result.documents["scoring"] == {"split": "test", "n_docs": 6, "excluded": 0}
    frame = result.to_frame()
    assert sorted(frame["size"].unique()) == default_sizes(L, "layer") == [1, 2, 3, 4]
    full = frame[frame["size"] == L]
    assert full["sufficiency"].nunique() == 1  # every locator's all-layer set is the same set
    assert full["sufficiency_percentile"].isna().all()  # no other set of that size exists
    band = result.random_frame()
    assert list(band["n_sets"]) == [3, 5, 3, 0]  # C(4,n) − 1 sets exist, at most --controls
    for name, area in result.areas.items():
        rows = frame[frame["locator"] == name]
        x = np.concatenate([[0.0], rows["fraction"]])
        assert area["cpr"] == pytest.approx(np.trapezoid(np.r_[0.0, rows["sufficiency"]], x))
        assert area["cmd"] == pytest.approx(
            np.trapezoid(np.r_[1.0, np.abs(1 - rows["sufficiency"])], x)
        )
    assert (root / "f" / "faithfulness.png").exists()
    assert "scored on 6 test documents" in capsys.readouterr().out


def test_same_split_leaves_the_selection_documents_out(sources) -> None:
    root, pair = sources
    argv = ["faithfulness", *pair, "--split", "validation", "--diff", f"{root}/diff"]
    assert main([*argv, "--controls", "2", "--locators", "kl", "--out", f"{root}/g"]) == 0
    result = FaithfulnessResult.load(root / "g")
    assert result.documents["scoring"] == {"split": "validation", "n_docs": 3, "excluded": 5}
    assert set(result.areas) == {"kl"}


def test_refusals_are_one_sentence(sources, capsys) -> None:
    root, pair = sources
    # the attribution used every validation document: nothing is left to score on
    argv = ["faithfulness", *pair, "--split", "validation", "--attribution", f"{root}/att"]
    assert main([*argv, "--out", f"{root}/h"]) == 2
    assert "every 'validation' document was used to select" in capsys.readouterr().err
    assert main(["faithfulness", *pair, "--out", f"{root}/i"]) == 2
    assert "needs at least one source of rankings" in capsys.readouterr().err
    argv = ["faithfulness", *pair, "--diff", f"{root}/diff", "--locators", "atp"]
    assert main([*argv, "--out", f"{root}/j"]) == 2
    assert "no source gives the locator atp; pass --sources atp=DIR" in capsys.readouterr().err


def test_locate_takes_the_most_faithful_locator(sources) -> None:
    root, pair = sources
    argv = ["faithfulness", *pair, "--diff", f"{root}/diff", "--sources", f"atp={root}/att"]
    if not (root / "f" / "faithfulness.json").exists():
        assert main([*argv, "--controls", "5", "--out", f"{root}/f"]) == 0
    result = FaithfulnessResult.load(root / "f")
    best = result.best(names(candidates_only=True))
    candidates = {k: a for k, a in result.areas.items() if locator(k).candidate}
    assert set(result.areas) - set(candidates) == {"first-k", "last-k", "evenly-spaced"}
    assert result.areas[best]["cpr"] == max(a["cpr"] for a in candidates.values())
    out = root / "faithful-circuit"
    argv = ["locate", "--diff", f"{root}/diff", "--score", "faithful", "--k", "2"]
    assert main([*argv, "--faithfulness", f"{root}/f", "--out", str(out)]) == 0
    circuit = Circuit.load(out)
    rows = result.to_frame().query("locator == @best and size == 2")
    assert circuit.score == best
    assert len(circuit.layers) == 2 and len(rows) == 1


def test_an_exact_scan_is_a_locator_and_its_documents_stay_out_of_scoring(sources) -> None:
    """A scan of the first 2 selection documents: the exact locator, scored on the validation
    documents after all 5 the diff selected on; locate reads it back as --score exact."""
    root, pair = sources
    scan = ["scan", *pair, "--split", "validation", "--limit", "2", "--level", "layer"]
    assert main([*scan, "--out", f"{root}/scan"]) == 0
    argv = ["faithfulness", *pair, "--split", "validation", "--diff", f"{root}/diff"]
    argv += ["--sources", f"exact={root}/scan", "--locators", "kl,exact", "--controls", "2"]
    assert main([*argv, "--out", f"{root}/e"]) == 0
    result = FaithfulnessResult.load(root / "e")
    assert set(result.areas) == {"kl", "exact"}
    assert result.documents["scoring"] == {"split": "validation", "n_docs": 3, "excluded": 5}
    assert result.sources["exact"] == {"locator": "exact", "directory": f"{root}/scan"}
    out = root / "exact-circuit"
    argv = ["locate", "--diff", f"{root}/diff", "--score", "faithful", "--k", "2"]
    assert main([*argv, "--faithfulness", f"{root}/e", "--out", str(out)]) == 0
    assert Circuit.load(out).score == result.best()
    # moved together, the result finds its sources in their new place
    moved = root / "moved"
    for name in ("e", "scan"):
        shutil.copytree(root / name, moved / name)
    saved = json.loads((moved / "e" / "faithfulness.json").read_text())
    assert saved["sources"]["exact"]["directory"] == "../scan"
    assert FaithfulnessResult.load(moved / "e").sources["exact"]["directory"] == f"{moved}/scan"
