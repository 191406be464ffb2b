"""bf16 copies of the matmul weights under bf16 autocast (``training.precision.bf16_weights``):
the same results bit for bit as autocast's own per-call casts — forward, generation,
a whole LoRA run, whose validation decodes with them — and every original weight back on
exit."""

from __future__ import annotations

import contextlib

import pytest
import torch

import sumcircuit.training.validation as validation
from sumcircuit.data.prompting import Encoded
from sumcircuit.evaluation.generate import generate_ids
from sumcircuit.models.archs import Arch
from sumcircuit.models.tiny import save_tiny, tiny_model
from sumcircuit.training import FinetuneConfig, finetune
from sumcircuit.training.adapters import add_lora
from sumcircuit.training.precision import bf16_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _adapted(name: str):
    model = tiny_model(name, seed=0)
    arch = Arch.from_model(model)
    peft = add_lora(
        model, arch, arch.lora_targets([1, 2], ("q", "v")), rank=2, alpha=4, dropout=0.0, seed=0
    )
    with torch.no_grad():  # a trained adapter: B is no longer zero
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(n)))
    return peft


@torch.no_grad()
def _logits(peft, ids: torch.Tensor) -> torch.Tensor:
    """Logits of ``ids`` under bf16 autocast."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return peft(input_ids=ids).logits


@pytest.mark.parametrize("name", ["gpt2", "llama", "gemma3"])
def test_bf16_copies_give_autocast_results_bit_for_bit(name: str) -> None:
    peft = _adapted(name)
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    logits = _logits(peft, ids)
    with bf16_weights(peft) as copied:
        assert copied > 0
        torch.testing.assert_close(_logits(peft, ids), logits, rtol=0, atol=0)


def test_generation_is_the_same_and_every_weight_comes_back(gpt2_tok) -> None:
    peft = _adapted("llama")
    base = peft.get_base_model()
    tied = base.get_output_embeddings().weight is base.get_input_embeddings().weight
    before = {n: p for n, p in peft.named_parameters()}
    prompts = [Encoded([5, 6, 7, 8], (0, 4), 4), Encoded([9, 10], (0, 2), 2)]
    kw = {"max_new_tokens": 6, "stop_at_newline": False, "bf16": True, "progress": False}
    plain = generate_ids(peft, gpt2_tok, prompts, **kw)
    with bf16_weights(peft) as every:
        assert every > 0
        assert all(
            p.dtype == torch.bfloat16
            for m in peft.modules()
            if isinstance(m, torch.nn.Linear)
            for p in [m.weight]
        )
        assert generate_ids(peft, gpt2_tok, prompts, **kw) == plain
    after = {n: p for n, p in peft.named_parameters()}
    assert after.keys() == before.keys()
    assert all(after[n] is before[n] and after[n].dtype == torch.float32 for n in after)
    assert (base.get_output_embeddings().weight is base.get_input_embeddings().weight) == tied
    with bf16_weights(peft, enabled=False) as none:
        assert none == 0


def test_a_bf16_lora_run_is_the_same_with_and_without_the_copies(
    tmp_path, xsum_sample, monkeypatch
):
    """A whole run, whose validation ROUGE-L decodes with the copies, is unchanged bit for bit."""
    model = str(
        save_tiny("llama", tmp_path / "llama", n_layers=3, n_heads=4, n_kv_heads=2, hidden=32)
    )
    kw = dict(
        data=xsum_sample,
        model=model,
        limit=8,
        max_length=96,
        batch_size=2,
        val_limit=4,
        rouge_every_epoch=2,
        eval_points=2,
        layers=[1, 2],
        lr=1e-2,
        precision="bf16",
        progress=False,
    )
    copied = finetune(FinetuneConfig(out=str(tmp_path / "copied"), **kw))

    @contextlib.contextmanager
    def off(*args, **kwargs):
        yield 0

    monkeypatch.setattr(validation, "bf16_weights", off)
    cast = finetune(FinetuneConfig(out=str(tmp_path / "cast"), **kw))
    assert copied.step_losses == cast.step_losses
    assert copied.curve == cast.curve
    assert copied.weights_sha256 == cast.weights_sha256
