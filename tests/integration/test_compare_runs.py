"""``sumcircuit compare RUN_A RUN_B RUN_C`` on three tiny run directories: real diff and
attribution stages on tiny models of 4 and 3 layers, and the study's summary, circuit and
study.json written through their result classes (a whole ``sumcircuit run`` would add LoRA
training that the comparison never reads).

A (4 layers) and B (3 layers) score the same documents: paired bootstrap, relative-depth bins.
C (4 layers) scores other documents, has no attribution and no summary: independent bootstrap,
``atp`` only in A, no verdicts; its ``exact`` folder is empty and is reported, not skipped."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from test_diff_tiny import write_data

from sumcircuit.analysis.diff.result import DiffResult
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.cli import main
from sumcircuit.io import write_json
from sumcircuit.layout import RunLayout
from sumcircuit.models.tiny import PEAKED_STD, save_tiny
from sumcircuit.report.run_comparison import RunComparison
from sumcircuit.report.summary_result import StudySummary

pytestmark = pytest.mark.usefixtures("one_thread")

K = 2
CLAIMS = ["the middle layers change most", "most heads lose entropy"]


def _stages(root, layers, data, *, attribute=True):
    base = save_tiny(
        "llama", root / "models" / "base", seed=0, n_layers=layers, init_std=PEAKED_STD
    )
    ft = save_tiny("llama", root / "models" / "ft", seed=1, n_layers=layers, init_std=PEAKED_STD)
    run = RunLayout(root / "run")
    pair = ["--base", str(base), "--finetuned", str(ft), "--data", data, "--batch-size", "4"]
    pair += ["--n-boot", "100"]
    assert main(["diff", *pair, "--per-doc", "--out", str(run / run.DIFF)]) == 0
    if attribute:
        assert main(["attribute", *pair, "--out", str(run / run.attribute("atp"))]) == 0
        train = root / "train.jsonl"  # the adapt stage reads the train split only
        train.write_text(Path(data).read_text().replace('"validation"', '"train"'))
        adapt = ["--model", str(base), "--data", str(train), "--batch-size", "4", "--limit", "4"]
        adapt += ["--probe-steps", "1", "--no-progress", "--out", str(run / run.ADAPT)]
        assert main(["adapt", *adapt]) == 0
    return run


def _summary(run, holds):
    model = {"name": "tiny", "layers": DiffResult.load(run / run.DIFF).n_layers}
    Circuit(model, "layer", "topk", "kl", layers=[0, 1]).save(run / run.locate())
    StudySummary(
        model="tiny-llama",
        dataset="words",
        config={"locate": {"k": K}},
        circuit={"level": "layer", "score": "kl", "rule": "topk", "layers": [0, 1]},
        paper_claims=[
            {"claim": claim, "holds": h, "ours": f"{claim}: {h}"}
            for claim, h in zip(CLAIMS, holds, strict=True)
        ],
    ).save(run.root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    same = write_data(root / "same.jsonl", 10)
    other = write_data(root / "other.jsonl", 9, seed=5)
    a = _stages(root / "a", 4, same)
    b = _stages(root / "b", 3, same)
    c = _stages(root / "c", 4, other, attribute=False)
    _summary(a, [False, True])
    _summary(b, [False, None])
    write_json(c.study_file, {"model": "tiny-llama", "data": other, "config": {"locate": {"k": K}}})
    (c / c.EXACT).mkdir()  # a stage folder with no result in it
    return a, b, c


def test_compare_three_runs_prints_and_writes_the_comparison(runs, tmp_path, capsys):
    a, b, c = runs
    out = tmp_path / "cmp"
    argv = ["compare", str(a.root), str(b.root), str(c.root), "--n-boot", "200"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "A vs B, on 3 relative-depth bins (layers 4 and 3):" in text
    assert "A vs C, same layers:" in text
    assert "paired (10/10)" in text and "independent (10/9)" in text
    assert "atp             only in A: not compared" in text
    assert "n/a: weight reads no documents (runs A, B)" in text
    assert "exact not read:" in text  # C's empty exact folder, said so
    assert "note: no summary.json" in text
    verdicts = text[text.index("verdicts on the paper's claims:") :]
    assert "the middle layers change most" in verdicts and "undecided" in verdicts
    assert {p.name for p in out.iterdir()} >= {
        "comparison.json",
        "comparison.csv",
        "compare_profiles.png",
        "compare_profiles.svg",
    }

    result = RunComparison.load(out)
    assert result.labels() == ["A", "B", "C"] and result.k == K
    assert [run["name"] for run in result.runs] == ["a/run", "b/run", "c/run"]
    assert [(p["a"], p["b"]) for p in result.pairs] == [("A", "B"), ("A", "C"), ("B", "C")]
    ab = result.pairs[0]
    assert ab["n_layers"] == [4, 3] and ab["n_common"] == 3
    assert ab["not_shared"] == {}
    assert set(ab["locators"]) == {
        "kl", "js", "entropy", "weight", "actmag", "atp", "atp-trapezoid", "first-k", "last-k",
        "evenly-spaced", "rgn", "fisher", "grad-energy", "probe-norm", "probe-act", "spectrum-snr",
    }  # fmt: skip
    # atp-trapezoid reads the atp result: both are A's alone against C
    adapt = ["rgn", "fisher", "grad-energy", "probe-norm", "probe-act", "spectrum-snr"]
    only_a = {name: ["A"] for name in ["atp", "atp-trapezoid", *adapt]}
    assert result.pairs[1]["not_shared"] == only_a  # C has no attribution and no adapt stage

    # Spearman of KL by hand: A's 4 layers sit in bins 0, 1, 1, 2 of B's 3
    kl_a = DiffResult.load(a / a.DIFF).scores("layer", "kl").to_numpy()
    kl_b = DiffResult.load(b / b.DIFF).scores("layer", "kl").to_numpy()
    binned = np.array([kl_a[0], (kl_a[1] + kl_a[2]) / 2, kl_a[3]])
    kl = ab["locators"]["kl"]
    assert kl["spearman"]["value"] == pytest.approx(stats.spearmanr(binned, kl_b).statistic)
    assert kl["kendall"]["value"] == pytest.approx(stats.kendalltau(binned, kl_b).statistic)
    top_a = {[0, 1, 1, 2][layer] for layer in np.argsort(-kl_a, kind="stable")[:K]}
    top_b = set(np.argsort(-kl_b, kind="stable")[:K].tolist())
    assert kl["top_k_bins"] == [sorted(top_a), sorted(top_b)]
    assert kl["jaccard"]["value"] == pytest.approx(len(top_a & top_b) / len(top_a | top_b))
    for measure in ("jaccard", "spearman", "kendall"):
        lo, hi = kl[measure]["ci95"]
        assert -1.0 <= lo <= hi <= 1.0 and kl[measure]["ci"] == "bootstrap"
    assert kl["resampling"] == "paired"
    assert ab["locators"]["atp"]["resampling"] == "paired"  # attribution keeps per-doc values
    assert ab["locators"]["actmag"]["resampling"] == "paired"  # kept per document now
    weight = ab["locators"]["weight"]
    assert weight["jaccard"]["ci95"] is None and "reads no documents" in weight["ci"]
    assert result.pairs[1]["locators"]["kl"]["resampling"] == "independent"

    run_a, run_c = result.run("A"), result.run("C")
    assert run_a["circuit"]["layers"] == [0, 1] and run_c["circuit"] is None
    assert [c["holds"] for c in run_a["claims"]] == [False, True] and run_c["claims"] == []
    assert run_a["locators"]["kl"]["top_k"] == np.argsort(-kl_a, kind="stable")[:K].tolist()
    assert run_a["locators"]["kl"]["per_doc"] == 10
    assert "exact" in run_c["unread"]
    assert len(result.to_frame()) == 16 + 8 + 8  # A-B share atp, atp-trapezoid and adapt too


def test_compare_without_per_document_scores_says_so(runs, tmp_path, capsys):
    a, b, _ = runs
    copy = RunLayout(tmp_path / "b")
    shutil.copytree(b.root, copy.root)
    (copy / copy.DIFF / DiffResult.PER_DOC_FILE).unlink()
    out = tmp_path / "cmp"
    assert main(["compare", str(a.root), str(copy.root), "--n-boot", "50", "--out", str(out)]) == 0
    kl = json.loads((out / "comparison.json").read_text())["pairs"][0]["locators"]["kl"]
    assert kl["jaccard"]["ci95"] is None
    assert kl["ci"] == "n/a: per-document scores not stored (run diff with --per-doc) (run B)"
    assert kl["spearman"]["value"] is not None  # the point estimate needs no documents
    assert "n/a: per-document scores not stored" in capsys.readouterr().out


def test_adaptation_locators_are_compared_by_their_point_values(runs, tmp_path):
    a, b, _ = runs
    out = tmp_path / "cmp"
    assert main(["compare", str(a.root), str(b.root), "--n-boot", "50", "--out", str(out)]) == 0
    pair = json.loads((out / "comparison.json").read_text())["pairs"][0]["locators"]
    for name in ("rgn", "fisher", "grad-energy", "probe-norm", "probe-act", "spectrum-snr"):
        assert pair[name]["spearman"]["value"] is not None, name
        assert pair[name]["jaccard"]["ci95"] is None
        assert pair[name]["ci"].startswith("n/a: no per-document scores"), pair[name]["ci"]


def test_compare_refuses_bad_run_arguments(runs, tmp_path, capsys):
    a, b, c = runs
    cases = [
        (["compare", str(a.root), str(b.root), "--k", "4"], "does not fit the 3 layers"),
        (["compare", str(a.root), str(a.root)], "given twice"),
        (["compare", str(a.root), str(tmp_path / "x.json")], "not both"),
        (["compare", str(a.root), str(b.root), "--out", str(a.root)], "one of the compared runs"),
        (["compare", str(a.root), str(tmp_path)], "not a sumcircuit run directory"),
        (["compare", str(a.root)], "at least two run directories"),
    ]
    (tmp_path / "x.json").write_text("{}")
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    other_k = RunLayout(tmp_path / "c")
    shutil.copytree(c.root, other_k.root)
    write_json(other_k.study_file, {"model": "m", "data": "d", "config": {"locate": {"k": 3}}})
    assert main(["compare", str(a.root), str(other_k.root)]) == 2
    assert "different locate.k" in capsys.readouterr().err
    assert main(["compare", str(a.root), str(other_k.root), "--k", "1", "--n-boot", "20"]) == 0
