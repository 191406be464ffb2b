"""Validation without repeated work: later losses resume at the lowest trainable block from the
first validation's residual stream, and runs share the loss before training through a cache —
the same losses bit for bit, the repeated compute not run."""

from __future__ import annotations

import pytest
import torch

from sumcircuit.data.batching import Prepared
from sumcircuit.data.prompting import Prompter
from sumcircuit.distributed import Processes
from sumcircuit.models.archs import Arch
from sumcircuit.models.hooks import hooks
from sumcircuit.models.loader import LoadedModel
from sumcircuit.models.tiny import tiny_model
from sumcircuit.training.adapters import add_lora
from sumcircuit.training.config import FinetuneConfig
from sumcircuit.training.validation import Validator, frozen_below, validation_loss

DOCS = [
    ("The council approved the new park on Monday after a long debate. " * 3, "Park approved."),
    ("Rain fell across the north of the country, flooding roads.", "Floods hit roads."),
    ("A local team won the cup final for the first time in fifty years.", "Team wins cup."),
]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _adapted(name: str, layers: list[int]):
    model = tiny_model(name, seed=0)
    arch = Arch.from_model(model)
    peft = add_lora(
        model, arch, arch.lora_targets(layers, ("q", "v")), rank=2, alpha=4, dropout=0.0, seed=0
    )
    with torch.no_grad():  # a trained adapter: B is no longer zero
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(n)))
    return peft, arch


@pytest.mark.parametrize("name", ["gpt2", "llama", "gemma3"])
def test_later_validations_resume_at_the_lowest_trainable_block(name, gpt2_tok) -> None:
    peft, arch = _adapted(name, [2, 3])
    assert frozen_below(peft, arch) == 2
    val = _val(gpt2_tok)
    config = FinetuneConfig(model="x", out="y", method="lora", batch_size=2, precision="fp32")
    procs = Processes(0, 1, torch.device("cpu"))
    validator = Validator(peft, val, config, procs, LoadedModel(peft, gpt2_tok, arch, {}))
    plain = validation_loss(peft, val, 2, procs, gpt2_tok.pad_token_id, config)
    runs = [0] * arch.n_layers

    def counter(layer: int):
        def count(module, args) -> None:
            runs[layer] += 1

        return count

    base = peft.get_base_model()
    blocks = list(arch.blocks(base))
    pre = {arch.block_name(i): counter(i) for i in range(arch.n_layers)}
    with hooks(base, pre=pre):
        first = validator.loss()  # records
        assert runs == [2, 2, 2, 2]  # two batches through every block
        second = validator.loss()  # resumes at block 2
    assert runs == [2, 2, 4, 4]
    assert first == second == plain  # bit for bit
    assert list(arch.blocks(base)) == blocks  # the frozen blocks are back


def test_nothing_is_resumed_when_a_parameter_outside_the_blocks_trains() -> None:
    model = tiny_model("llama", seed=0)
    arch = Arch.from_model(model)
    assert frozen_below(model, arch) == 0  # a full fine-tune: everything trains
    for p in model.parameters():
        p.requires_grad_(False)
    assert frozen_below(model, arch) == 0  # nothing trains: nothing to resume below
    for p in arch.blocks(model)[3].parameters():
        p.requires_grad_(True)
    assert frozen_below(model, arch) == 3
    model.get_input_embeddings().weight.requires_grad_(True)
    assert frozen_below(model, arch) == 0


def _val(tok) -> Prepared:
    prompter = Prompter(tok, max_length=64)
    return Prepared(
        encoded=[prompter.encode(d, s) for d, s in DOCS], ids=["0", "1", "2"], examples=[]
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_runs_share_the_loss_before_training(precision, gpt2_tok, tmp_path) -> None:
    """A LoRA run's loss before training is its base model's, bit for bit (B starts at zero), so
    a full fine-tune and any LoRA run of the same weights read one cached value."""
    val = _val(gpt2_tok)
    procs = Processes(0, 1, torch.device("cpu"))
    config = FinetuneConfig(model="x", out="y", batch_size=2, precision=precision)
    full = tiny_model("llama", seed=0)
    arch = Arch.from_model(full)
    identity = {"sha256": "weights-of-the-tiny-model"}
    lora = add_lora(
        tiny_model("llama", seed=0),
        arch,
        arch.lora_targets([1, 2], ("q", "v")),
        rank=2,
        alpha=4,
        dropout=0.0,
        seed=0,
    )
    measured = {}
    for name, model in (("full", full), ("lora", lora)):
        loaded = LoadedModel(model, gpt2_tok, arch, identity)
        measured[name], source = Validator(model, val, config, procs, loaded).start_loss(None)
        assert source is None
    assert measured["full"] == measured["lora"]

    runs = [0]
    first = Validator(full, val, config, procs, LoadedModel(full, gpt2_tok, arch, identity))
    with hooks(full, pre={arch.block_name(0): lambda m, a: runs.__setitem__(0, runs[0] + 1)}):
        assert first.start_loss(str(tmp_path)) == (measured["full"], None)
        assert runs == [2]  # measured: two batches
        again = Validator(lora, val, config, procs, LoadedModel(lora, gpt2_tok, arch, identity))
        (entry,) = tmp_path.glob("val-loss-start-*.json")
        assert again.start_loss(str(tmp_path)) == (measured["full"], str(entry))
    other = LoadedModel(full, gpt2_tok, arch, {"sha256": "other-weights"})
    with hooks(full, pre={arch.block_name(0): lambda m, a: runs.__setitem__(0, runs[0] + 1)}):
        Validator(full, val, config, procs, other).start_loss(str(tmp_path))  # another key
        assert runs == [4]
        entry.write_text("{not json")  # a corrupt entry is measured again and rewritten
        assert first.start_loss(str(tmp_path)) == (measured["full"], None)
        assert runs == [6]
    assert len(list(tmp_path.glob("val-loss-start-*.json"))) == 2
