"""``sumcircuit attribute`` end to end on tiny models: the tables in scan's layout, per-document
values that add up to them, ``locate --score attribution``, and torchrun sharding."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from test_diff_ddp import free_port, torchrun_env
from test_diff_tiny import write_data

from sumcircuit.analysis.causal.attribute import AttributionResult
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.analysis.locate.registry import locator
from sumcircuit.cli import main
from sumcircuit.errors import SumcircuitError
from sumcircuit.models.tiny import PEAKED_STD, save_tiny

N_DOCS, L, H = 10, 2, 4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("attribute")
    base = save_tiny("llama", root / "base", seed=0, n_layers=L, init_std=PEAKED_STD)
    ft = save_tiny("llama", root / "ft", seed=1, n_layers=L, init_std=PEAKED_STD)
    data = write_data(root / "d.jsonl", N_DOCS)
    args = ["--base", str(base), "--finetuned", str(ft), "--data", data, "--batch-size", "4"]
    args += ["--n-boot", "200"]
    assert main(["attribute", *args, "--out", str(root / "att")]) == 0
    return root, args


def test_tables_in_scan_layout_and_per_document_values(run) -> None:
    root, _ = run
    result = AttributionResult.load(root / "att")
    assert result.method == "atp" and result.n_docs == N_DOCS
    assert result.timing["passes"] == 2 * 3  # 3 batches, a forward+backward in each model
    layers, heads, mlps = (result.frame(level) for level in ("layer", "head", "mlp"))
    assert len(layers) == L and len(heads) == L * H and len(mlps) == L
    assert list(pd.read_csv(root / "att" / "attribution_head.csv").columns[:5]) == [
        "layer",
        "head",
        "sufficiency",
        "sufficiency_lo",
        "sufficiency_hi",
    ]
    assert (layers["sufficiency_lo"] <= layers["sufficiency"]).all()
    assert (layers["sufficiency"] <= layers["sufficiency_hi"]).all()
    per_doc = result.per_doc
    assert len(per_doc) == N_DOCS * (L + L * H + L)
    gain = per_doc.drop_duplicates("doc").eval("m_ft - m_base").sum()
    summed = per_doc[per_doc["component"] == "layer"].groupby("layer")["sufficiency"].sum()
    np.testing.assert_allclose(summed.to_numpy() / gain, layers["sufficiency"], rtol=1e-9)
    # a layer is its own node (the block's write), estimated in both directions
    necessity = per_doc[per_doc["component"] == "layer"].groupby("layer")["necessity"].sum()
    np.testing.assert_allclose(necessity.to_numpy() / gain, layers["necessity"], rtol=1e-9)
    again = AttributionResult.from_dict(result.to_dict())
    assert again.rows == result.rows and again.mlp_rows == result.mlp_rows


def test_locate_ranks_by_attribution(run, capsys) -> None:
    root, args = run
    assert main(["diff", *args, "--out", str(root / "diff")]) == 0
    out = root / "circuit"
    argv = ["locate", "--diff", str(root / "diff"), "--score", "atp", "--k", "1"]
    assert main([*argv, "--sources", f"atp={root / 'att'}", "--out", str(out)]) == 0
    best = AttributionResult.load(root / "att").scores("layer").idxmax()
    assert Circuit.load(out).layers == [best]
    capsys.readouterr()
    assert main(argv + ["--out", str(root / "c2")]) == 2
    assert "--score atp reads a attribution result: pass --sources atp=DIR" in (
        capsys.readouterr().err
    )


def test_atp_gives_the_trapezoid_and_records_its_documents(run, capsys) -> None:
    """atp-trapezoid is the mean of atp's two end estimates, read from the same result; the
    result records the documents it was computed on, and a circuit located from it too."""
    root, _ = run
    result = AttributionResult.load(root / "att")
    ids = [f"d{i}" for i in range(N_DOCS)]
    assert result.doc_ids == ids and result.provenance["data"]["ids"] == ids
    trapezoid = locator("atp-trapezoid").rank("layer", root / "att")
    expected = (result.scores("layer") + result.necessity("layer")) / 2
    np.testing.assert_allclose(trapezoid.scores.to_numpy(), expected.to_numpy())
    assert not np.allclose(expected, result.scores("layer"))  # not atp under another name
    assert trapezoid.ids == ids and trapezoid.split == "validation"
    if not (root / "diff").exists():
        assert main(["diff", *run[1], "--out", str(root / "diff")]) == 0
    out = root / "trapezoid-circuit.json"
    argv = ["locate", "--diff", str(root / "diff"), "--score", "atp-trapezoid", "--k", "1"]
    assert main([*argv, "--sources", f"atp-trapezoid={root / 'att'}", "--out", str(out)]) == 0
    circuit = Circuit.load(out)
    assert circuit.layers == [int(expected.idxmax())] and circuit.score == "atp-trapezoid"
    [documents] = circuit.documents
    assert documents["ids"] == ids and documents["source"] == "atp-trapezoid"


def test_flat_attribution_scores_name_the_attribute_stage(run, tmp_path, capsys) -> None:
    root, args = run
    shutil.copytree(root / "att", tmp_path / "att")
    path = tmp_path / "att" / "attribution.json"
    data = json.loads(path.read_text())
    for row in data["rows"]:
        row["sufficiency"] = 0.0
    path.write_text(json.dumps(data))
    if not (root / "diff").exists():
        assert main(["diff", *args, "--out", str(root / "diff")]) == 0
    argv = ["locate", "--diff", str(root / "diff"), "--score", "atp", "--k", "1"]
    assert main([*argv, "--sources", f"atp={tmp_path / 'att'}", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "was sumcircuit attribute run on a model against itself" in err
    assert "sumcircuit diff" not in err and "run diff" not in err


def test_damaged_result_is_one_sentence(run, tmp_path) -> None:
    root, _ = run
    shutil.copytree(root / "att", tmp_path / "att")
    path = tmp_path / "att" / "attribution.json"
    path.write_text(path.read_text()[:100])
    with pytest.raises(SumcircuitError, match="attribution.json.*is damaged.*sumcircuit attribute"):
        AttributionResult.load(tmp_path / "att")


def test_torchrun_shards_documents_and_equals_one_process(run, tmp_path) -> None:
    root, args = run
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1"]
    launch += ["--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    launch += ["--master_port", str(free_port()), "-m", "sumcircuit.cli", "attribute"]
    proc = subprocess.run(
        [*launch, *args, "--out", str(tmp_path / "two")],
        env=torchrun_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = AttributionResult.load(root / "att"), AttributionResult.load(tmp_path / "two")
    assert two.timing["world_size"] == 2 and two.n_docs == N_DOCS
    assert two.timing["passes"] == one.timing["passes"] + 2  # 2 shards of 5: 2+1 batches each
    values = ["layer", "head", "sufficiency", "necessity"]
    for level in ("layer", "head", "mlp"):
        a, b = two.frame(level), one.frame(level)
        pd.testing.assert_frame_equal(a[values], b[values], rtol=1e-4, atol=1e-6)
        # CI bounds are order statistics of bootstrap resamples: float noise in the values can
        # move a resample across the quantile, so they agree less tightly.
        pd.testing.assert_frame_equal(a, b, rtol=1e-2, atol=1e-4)
