"""Rankings are applied only to the model pair they were computed on: ``faithfulness`` with a diff
or attribution of another fine-tune, and ``locate --sources`` with an attribution of another
pair than the diff's, are refused in one sentence before anything is patched."""

from __future__ import annotations

from pathlib import Path

import pytest

from sumcircuit.analysis.causal import faithfulness as faithfulness_module
from sumcircuit.analysis.causal.faithfulness import FaithfulnessConfig, faithfulness
from sumcircuit.analysis.locate.rules import LocateConfig, locate
from sumcircuit.cli import main
from sumcircuit.errors import SumcircuitError
from sumcircuit.models.tiny import save_tiny

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SIZES = dict(n_layers=3, n_heads=4, n_kv_heads=2, hidden=32)
QUICK = ["--limit", "3", "--max-length", "64", "--batch-size", "3"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, xsum_sample) -> dict[str, str]:
    """A base, two fine-tunes of it (other seeds), and a diff and an attribution of each pair."""
    root = tmp_path_factory.mktemp("pairs")
    e = {"data": xsum_sample}
    for name, seed in (("base", 0), ("ft", 1), ("other", 2)):
        e[name] = str(save_tiny("llama", root / name, seed=seed, **SIZES))
    for ft in ("ft", "other"):
        pair = ["--base", e["base"], "--finetuned", e[ft], "--data", xsum_sample, *QUICK]
        e[f"diff_{ft}"], e[f"atp_{ft}"] = str(root / f"diff_{ft}"), str(root / f"atp_{ft}")
        argv = ["diff", *pair, "--n-boot", "100", "--out", e[f"diff_{ft}"]]
        assert main(argv) == 0
        assert main(["attribute", *pair, "--method", "atp", "--out", e[f"atp_{ft}"]]) == 0
    return e


@pytest.fixture
def no_patching(monkeypatch):
    """Patching raises: a test that reaches it was not refused first."""

    def patched(*args, **kwargs):
        raise AssertionError("patched")

    monkeypatch.setattr(faithfulness_module, "patch_effects", patched)


def _faith(e: dict[str, str], **kwargs) -> FaithfulnessConfig:
    return FaithfulnessConfig(
        base=e["base"],
        finetuned=e["ft"],
        data=e["data"],
        limit=3,
        max_length=64,
        batch_size=3,
        controls=1,
        **kwargs,
    )


def test_faithfulness_of_the_models_own_rankings_reaches_patching(pairs, no_patching) -> None:
    """The control: the right pair passes the check (and would be patched)."""
    config = _faith(pairs, diff=pairs["diff_ft"], sources={"atp": pairs["atp_ft"]})
    with pytest.raises(AssertionError, match="patched"):
        faithfulness(config)


def test_faithfulness_with_another_models_diff_is_refused_before_patching(
    pairs, no_patching
) -> None:
    with pytest.raises(SumcircuitError) as info:
        faithfulness(_faith(pairs, diff=pairs["diff_other"], locators=["kl"]))
    message = str(info.value)
    assert message.startswith(f"the kl ranking in {pairs['diff_other']!r} was computed with ")
    assert f"finetuned model {pairs['other']!r} (sha256 " in message
    assert f"not {pairs['ft']!r} (sha256 " in message and "models faithfulness patches" in message


def test_faithfulness_with_another_pairs_attribution_is_refused(pairs, no_patching) -> None:
    config = _faith(pairs, diff=pairs["diff_ft"], sources={"atp": pairs["atp_other"]})
    with pytest.raises(SumcircuitError, match=r"^the atp ranking in .*atp_other' was computed"):
        faithfulness(config)


def test_faithfulness_with_the_pair_swapped_is_refused(pairs, no_patching) -> None:
    config = _faith(pairs, diff=pairs["diff_ft"], locators=["kl"])
    config.base, config.finetuned = pairs["ft"], pairs["base"]
    with pytest.raises(SumcircuitError, match=r"computed with base model .*/base' \(sha256"):
        faithfulness(config)


def test_the_cli_refusal_is_one_line_and_writes_nothing(pairs, tmp_path, capsys) -> None:
    out = tmp_path / "f"
    argv = ["faithfulness", "--base", pairs["base"], "--finetuned", pairs["ft"]]
    argv += ["--data", pairs["data"], *QUICK, "--diff", pairs["diff_other"], "--out", str(out)]
    capsys.readouterr()
    assert main(argv) == 2
    err = [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.strip() and "it/s]" not in line
    ]
    assert len(err) == 1 and err[0].startswith("error: the kl ranking in ")
    assert not out.exists()


def test_locate_refuses_sources_of_another_pair_than_the_diff(pairs) -> None:
    own = LocateConfig(diff=pairs["diff_ft"], score="atp", k=1, sources={"atp": pairs["atp_ft"]})
    assert locate(own).score == "atp"
    other = LocateConfig(
        diff=pairs["diff_ft"], score="atp", k=1, sources={"atp": pairs["atp_other"]}
    )
    with pytest.raises(SumcircuitError) as info:
        locate(other)
    message = str(info.value)
    assert "the atp ranking in" in message and f"of the diff {pairs['diff_ft']!r}" in message


def test_locate_faithful_refuses_curves_of_another_pair(pairs, tmp_path: Path) -> None:
    curves = tmp_path / "curves"
    argv = ["faithfulness", "--base", pairs["base"], "--finetuned", pairs["other"]]
    argv += ["--data", pairs["data"], *QUICK, "--diff", pairs["diff_other"], "--locators", "kl"]
    assert main([*argv, "--controls", "1", "--sizes", "1", "--out", str(curves)]) == 0
    config = dict(score="faithful", faithfulness=str(curves), k=1)
    assert locate(LocateConfig(diff=pairs["diff_other"], **config)).score == "kl"
    with pytest.raises(SumcircuitError, match=r"^the faithfulness curves in .* computed with"):
        locate(LocateConfig(diff=pairs["diff_ft"], **config))
