"""finetune end to end on tiny models: resume equals an uninterrupted run, outputs load back,
and bad input gets one clear sentence."""

import json

import pytest
import torch
from safetensors.torch import load_file

import sumcircuit.training.loop as loop
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.cli import main
from sumcircuit.errors import SumcircuitError
from sumcircuit.models.loader import load_model
from sumcircuit.models.tiny import save_tiny
from sumcircuit.training import FinetuneConfig, TrainingResult, finetune, load_trained

FAST = dict(limit=8, max_length=96, batch_size=2, val_limit=4, progress=False)


@pytest.fixture
def fast(xsum_sample):
    """Small, quick finetune settings on the shipped XSum sample (no network)."""
    return dict(FAST, data=xsum_sample)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        arch: str(save_tiny(arch, root / arch, n_layers=3, n_heads=4, n_kv_heads=2, hidden=32))
        for arch in ("llama", "gpt2")
    }


def _adapter(directory):
    return load_file(str(directory / "adapter_model.safetensors"))


def test_resume_with_overwrite_continues_the_same_run_and_replaces_another(
    tiny, tmp_path, fast, caplog
):
    """What ``sumcircuit run`` passes (resume and overwrite): a killed arm resumes from its
    checkpoint instead of starting over; a different run in the folder is replaced."""
    kw = dict(fast, model=tiny["llama"], layers=[1, 2], epochs=2, lr=1e-2)
    full = finetune(FinetuneConfig(out=str(tmp_path / "a"), **kw))
    out = str(tmp_path / "b")
    finetune(FinetuneConfig(out=out, max_steps=3, **kw))
    with caplog.at_level("INFO", logger="sumcircuit"):
        resumed = finetune(FinetuneConfig(out=out, resume=True, overwrite=True, **kw))
    assert "at epoch 0, step 3" in caplog.text or "at epoch 1, step 3" in caplog.text
    assert resumed.step_losses == pytest.approx(full.step_losses, abs=1e-6)
    a, b = _adapter(tmp_path / "a"), _adapter(tmp_path / "b")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0)
    other = finetune(FinetuneConfig(out=out, resume=True, overwrite=True, **dict(kw, rank=4)))
    assert other.config["rank"] == 4 and len(other.step_losses) == len(full.step_losses)


def test_resume_after_interruption_ends_with_the_same_weights(tiny, tmp_path, fast, monkeypatch):
    kw = dict(fast, model=tiny["llama"], layers=[1, 2], epochs=2, lr=1e-2)
    steps: list[int] = []
    save = loop.save_checkpoint
    monkeypatch.setattr(
        loop,
        "save_checkpoint",
        lambda out, blob, side: steps.append(side["step"]) or save(out, blob, side),
    )
    full = finetune(FinetuneConfig(out=str(tmp_path / "a"), **kw))
    assert steps == [4]  # the first epoch's end; the last epoch's end saves the model instead
    part = finetune(FinetuneConfig(out=str(tmp_path / "b"), max_steps=3, **kw))
    assert not part.complete and len(part.step_losses) == 3
    assert not (tmp_path / "b" / "training.json").exists()
    with pytest.raises(SumcircuitError, match="pass --resume"):
        finetune(FinetuneConfig(out=str(tmp_path / "b"), **kw))
    resumed = finetune(FinetuneConfig(out=str(tmp_path / "b"), resume=True, **kw))
    assert resumed.complete and len(full.step_losses) == 8
    assert resumed.step_losses == pytest.approx(full.step_losses, abs=1e-6)
    a, b = _adapter(tmp_path / "a"), _adapter(tmp_path / "b")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0)
    assert full.step_losses[-1] < full.step_losses[0]  # it learns (high lr, tiny model)
    assert [e.epoch for e in resumed.epochs] == [0, 1]
    # learning curve, eval_points=4 over 8 steps: 2, 4, 6, 8 plus step 0; 4 and 8 are epoch ends
    assert [p.step for p in part.curve] == [0, 2]  # measured before the interruption ...
    for run in (full, resumed):  # ... kept by the checkpoint, the rest measured after resuming
        assert [p.step for p in run.curve] == [0, 2, 4, 6, 8]
        assert [p.epoch for p in run.curve] == [0.0, 0.5, 1.0, 1.5, 2.0]
        assert [p.examples_seen for p in run.curve] == [0, 4, 8, 12, 16]
        assert run.curve[0].val_loss == run.val_loss_start
        assert run.curve[2].val_loss == run.epochs[0].val_loss  # reused, not measured twice
        assert run.curve[-1].val_loss == run.epochs[-1].val_loss
        assert all(p.val_rougeL is None for p in run.curve)  # rouge_every_epoch is off
    assert [p.val_loss for p in resumed.curve] == pytest.approx(
        [p.val_loss for p in full.curve], abs=1e-6
    )
    assert full.curve[-1].val_loss < full.curve[0].val_loss
    saved = json.loads((tmp_path / "b" / "training.json").read_text())
    assert saved["trainable_params"] == full.trainable_params > 0
    assert {"epoch", "train_loss", "val_loss", "wall_s", "tokens_per_s"} <= set(saved["epochs"][0])
    assert saved["provenance"]["models"]["base"]["sha256"]
    assert not (tmp_path / "b" / "checkpoint.safetensors").exists()
    # the same config again: done, nothing retrained; another config: refused
    again = finetune(FinetuneConfig(out=str(tmp_path / "b"), **kw))
    assert again.step_losses == resumed.step_losses
    with pytest.raises(SumcircuitError, match="holds a different run"):
        finetune(FinetuneConfig(out=str(tmp_path / "b"), **dict(kw, rank=4)))


def test_full_finetune_writes_a_loadable_model(tiny, tmp_path, xsum_sample):
    out = tmp_path / "full"
    code = main(
        [
            "finetune",
            "--model",
            tiny["gpt2"],
            "--data",
            xsum_sample,
            "--method",
            "full",
            "--out",
            str(out),
            "--limit",
            "4",
            "--max-length",
            "96",
            "--batch-size",
            "4",
            "--val-limit",
            "0",
            "--no-progress",
        ]
    )
    assert code == 0
    result = TrainingResult.load(out)
    assert result.trainable_params == result.total_params
    trained = load_model(str(out))
    base = load_model(tiny["gpt2"])
    changed = [
        n
        for n, p in trained.model.named_parameters()
        if not torch.equal(p, base.model.get_parameter(n))
    ]
    assert changed


def test_head_level_circuit_adapter_round_trips_through_load_trained(tiny, tmp_path, fast):
    base = load_model(tiny["gpt2"])
    circuit = tmp_path / "circuit.json"
    Circuit(
        model=base.identity,
        level="head",
        rule="manual",
        score="manual",
        layers=[],
        heads=[(1, 2), (2, 0)],
    ).save(circuit)
    out = tmp_path / "heads"
    result = finetune(
        FinetuneConfig(
            out=str(out),
            model=tiny["gpt2"],
            circuit=str(circuit),
            lr=1e-2,
            rouge_every_epoch=2,
            **dict(fast, val_limit=0),
        )
    )
    assert 0.0 <= result.epochs[0].val_rougeL <= 1.0
    # 4 steps, eval_points=4: every step; no validation loss (val_limit 0), so no step 0
    assert [p.step for p in result.curve] == [1, 2, 3, 4]
    assert all(0.0 <= p.val_rougeL <= 1.0 and p.val_loss is None for p in result.curve)
    assert result.curve[-1].val_rougeL == result.epochs[-1].val_rougeL
    # 2 layers × (c_attn: r·(32 in + 3·8 kept rows) + c_proj: r·(8 kept cols + 32 out)), r = 8
    assert result.trainable_params == 2 * 8 * ((32 + 24) + (8 + 32))
    masks = json.loads((out / "head_masks.json").read_text())
    assert {m["module"] for m in masks} == {
        f"transformer.h.{i}.attn.{n}" for i in (1, 2) for n in ("c_attn", "c_proj")
    }
    loaded = load_trained(str(out))  # base model read from training.json
    weights = dict(loaded.model.named_parameters())
    b = weights["base_model.model.transformer.h.1.attn.c_attn.lora_B.default.weight"]
    assert torch.all(b[:16] == 0) and torch.all(b[24:48] == 0) and torch.any(b[16:24] != 0)
    with pytest.raises(SumcircuitError, match="was trained on base model"):
        load_trained(tiny["llama"], adapter_dir=out)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch, fast):
    real = loop.summary_ce_sum
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        ce, n = real(*args, **kwargs)
        return (ce * float("nan"), n) if calls["n"] > 2 else (ce, n)

    monkeypatch.setattr(loop, "summary_ce_sum", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(SumcircuitError, match=r"NaN.*last good checkpoint \(step 2\)"):
        finetune(
            FinetuneConfig(
                out=str(out), model=tiny["llama"], checkpoint_every=1, **dict(fast, val_limit=0)
            )
        )
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 2


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"layers": [7]}, "layer 7 is out of range"),
        ({"heads": [(1, 9)]}, "head 9 is out of range"),
        ({"max_length": 8}, "fits max_length=8"),
    ],
)
def test_bad_input_is_one_clear_sentence(tiny, tmp_path, kwargs, words, fast):
    with pytest.raises(SumcircuitError, match=words):
        finetune(
            FinetuneConfig(out=str(tmp_path / "x"), model=tiny["llama"], **dict(fast, **kwargs))
        )
