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
    # patched forwards resume at their first patched layer: the skipped layers are recorded
    timing = result.timing
    assert timing["layer_forwards"] + timing["layer_forwards_skipped"] == L * timing["forwards"]
    assert timing["layer_forwards_skipped"] > 0
    baselines = {"first-k", "last-k", "evenly-spaced"}
    assert set(result.areas) == {"kl", "js", "entropy", "weight", "actmag", "atp"} | baselines
    assert result.sources["last-k"] == {"locator": "last-k", "directory": None, "ranking": "signed"}
    assert result.sources["entropy"]["ranking"] == "absolute"
    # the baselines read no document: the selection documents are the diff's and atp's alone
    assert {d["split"] for d in result.documents["selection"]} == {"validation"}
    scoring = result.documents["scoring"]
    assert {k: scoring[k] for k in ("split", "n_docs", "excluded", "overlap")} == {
        "split": "test",
        "n_docs": 6,
        "excluded": 0,
        "overlap": 0,
    }
    assert scoring["ids"] == [f"d{i}" for i in range(8, 14)]
    selected = {i for r in result.documents["selection_records"] for i in r["ids"]}
    assert selected == {f"d{i}" for i in range(8)}  # the diff's 5 and atp's 8, by id
    frame = result.to_frame()
    assert sorted(frame["size"].unique()) == default_sizes(L, "layer") == [1, 2, 3, 4]
    full = frame[frame["size"] == L]
    assert full["sufficiency"].nunique() == 1  # every locator's all-layer set is the same set
    assert full["sufficiency_percentile"].isna().all()  # no other set of that size exists
    # the ceiling is that set: every layer's write patched, with its CI; curves normalised by it
    ceiling = result.ceiling["sufficiency"]
    assert ceiling["value"] == pytest.approx(full["sufficiency"].iloc[0])
    assert ceiling["ci95"][0] <= ceiling["value"] <= ceiling["ci95"][1]
    assert result.ceiling["none"] == 0.0
    assert np.allclose(frame["sufficiency_norm"], frame["sufficiency"] / ceiling["value"])
    band = result.random_frame()
    assert list(band["n_sets"]) == [4, 5, 4, 0]  # C(4,n) sets exist, at most --controls
    for name, area in result.areas.items():
        rows = frame[frame["locator"] == name]
        x = np.concatenate([[0.0], rows["fraction"]])
        assert area["cpr"] == pytest.approx(np.trapezoid(np.r_[0.0, rows["sufficiency"]], x))
        assert area["cmd"] == pytest.approx(
            np.trapezoid(np.r_[1.0, np.abs(1 - rows["sufficiency"])], x)
        )
        assert area["cpr_ci95"][0] <= area["cpr_ci95"][1]
        assert area["cmd_ci95"][0] <= area["cmd_ci95"][1]
    choice = result.choice
    candidates = {k for k in result.areas if locator(k).candidate}
    assert choice["best_cpr"] == max(candidates, key=lambda k: result.areas[k]["cpr"])
    assert choice["runner_up"] in candidates and choice["winner"] in choice["tied"]
    lo, hi = choice["difference"]["ci95"]
    assert choice["significant"] == (lo > 0) and lo <= choice["difference"]["value"] <= hi
    assert result.best() == choice["winner"]
    assert (root / "f" / "faithfulness.png").exists()
    assert "scored on 6 test documents" in capsys.readouterr().out


def test_selection_documents_are_refused_left_out_or_allowed(sources, capsys) -> None:
    """Scoring on the diff's own documents is refused (by id, whatever the split is called),
    left out with --exclude-selection, or scored on knowingly with --allow-overlap."""
    root, pair = sources
    argv = ["faithfulness", *pair, "--split", "validation", "--diff", f"{root}/diff"]
    argv += ["--controls", "2", "--locators", "kl"]
    assert main([*argv, "--out", f"{root}/refused"]) == 2
    err = capsys.readouterr().err
    assert "5 of the 8 scoring documents selected the rankings being scored (kl)" in err
    assert "--exclude-selection" in err and "--allow-overlap" in err
    assert not (root / "refused").exists()
    # a document that selected is refused under another split name: a file whose test split
    # repeats three of the validation documents the diff read
    rows = [json.loads(line) for line in open(pair[pair.index("--data") + 1])]
    again = [r | {"split": "test"} for r in rows[:3]] + [r for r in rows if r["split"] == "test"]
    renamed = root / "renamed.jsonl"
    renamed.write_text("".join(json.dumps(r) + "\n" for r in rows[:8] + again))
    other = [*pair[: pair.index("--data")], "--data", str(renamed), "--n-boot", "200"]
    diff = [*other, "--split", "validation", "--limit", "4", "--out", f"{root}/diff2"]
    assert main(["diff", *diff]) == 0
    scored = ["--diff", f"{root}/diff2", "--controls", "0", "--locators", "kl"]
    assert main(["faithfulness", *other, *scored, "--out", f"{root}/renamed"]) == 2
    assert "3 of the 9 scoring documents selected" in capsys.readouterr().err
    assert main([*argv, "--exclude-selection", "--out", f"{root}/g"]) == 0
    result = FaithfulnessResult.load(root / "g")
    scoring = result.documents["scoring"]
    assert (scoring["n_docs"], scoring["excluded"], scoring["overlap"]) == (3, 5, 0)
    assert scoring["ids"] == ["d5", "d6", "d7"]
    assert set(result.areas) == {"kl"}
    # locate ranks by the diff the chosen curve was drawn from, not another --diff, and the
    # circuit records the documents of both its ranking and the choice of its locator
    out = root / "faithful-from-recorded-diff.json"
    argv_locate = ["locate", "--diff", f"{root}/diff2", "--score", "faithful", "--k", "1"]
    assert main([*argv_locate, "--faithfulness", f"{root}/g", "--out", str(out)]) == 0
    circuit = Circuit.load(out)
    ranking, choice = circuit.documents
    assert ranking["ids"] == [f"d{i}" for i in range(5)] and ranking["source"] == "kl"
    assert choice["role"] == "locator choice" and choice["ids"] == ["d5", "d6", "d7"]
    assert circuit.scores["locator_choice"]["winner"] == "kl"
    assert main([*argv, "--allow-overlap", "--out", f"{root}/knowingly"]) == 0
    scoring = FaithfulnessResult.load(root / "knowingly").documents["scoring"]
    assert (scoring["n_docs"], scoring["overlap"], scoring["allow_overlap"]) == (8, 5, True)


def test_refusals_are_one_sentence(sources, capsys) -> None:
    root, pair = sources
    # the attribution used every validation document: nothing is left to score on
    argv = ["faithfulness", *pair, "--split", "validation", "--attribution", f"{root}/att"]
    assert main([*argv, "--exclude-selection", "--out", f"{root}/h"]) == 2
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
    argv += ["--exclude-selection"]
    assert main([*argv, "--out", f"{root}/e"]) == 0
    result = FaithfulnessResult.load(root / "e")
    assert set(result.areas) == {"kl", "exact"}
    scoring = result.documents["scoring"]
    assert (scoring["split"], scoring["n_docs"], scoring["excluded"]) == ("validation", 3, 5)
    assert result.sources["exact"]["directory"] == f"{root}/scan"
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
