"""LoRA adapters on layers and heads: exact counts, masks that hold, loss on summary rows only,
and no autograd below the lowest adapted layer."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, LlamaConfig

from sumcircuit.data.prompting import Encoded, collate
from sumcircuit.models.archs import Arch
from sumcircuit.models.hooks import hooks
from sumcircuit.models.tiny import tiny_model
from sumcircuit.training.adapters import (
    add_lora,
    count_trainable,
    equal_budget_rank,
    head_masks,
    lora_entries,
    masked_gradients,
    reallocated_ranks,
)
from sumcircuit.training.loss import body_and_head, summary_ce_sum

TARGETS = ("q", "k", "v", "o")


def _smollm2_on_meta():
    """A model with smollm2-135m's exact sizes, on the meta device (no memory, no download)."""
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def _lora(model, layers, rank=8, heads=None, targets=TARGETS):
    arch = Arch.from_model(model)
    modules = arch.lora_targets(layers, targets)
    masks = head_masks(model, arch, heads, targets) if heads else []
    peft = add_lora(
        model, arch, modules, rank=rank, alpha=2 * rank, dropout=0.0, seed=0, masks=masks
    )
    return peft, arch, modules, masks


def test_targeted_layers_2_3_5_have_exactly_a_tenth_of_standard_lora_on_smollm2_sizes():
    targeted, _, _, _ = _lora(_smollm2_on_meta(), [2, 3, 5])
    standard, _, _, _ = _lora(_smollm2_on_meta(), list(range(30)))
    n_targeted, n_standard = count_trainable(targeted), count_trainable(standard)
    # per layer r·(576+576 + 576+192 + 576+192 + 576+576) = 8·3840
    assert n_targeted == 3 * 8 * 3840 == 92160
    assert n_standard == 10 * n_targeted


def test_equal_budget_rank_matches_standard_count_exactly_on_smollm2_sizes():
    model = _smollm2_on_meta()
    arch = Arch.from_model(model)
    modules = arch.lora_targets([2, 3, 5], TARGETS)
    rank, counts = equal_budget_rank(model, arch, modules, [], 8, TARGETS)
    assert rank == 80
    assert counts["targeted_params"] == counts["standard_params"] == 921600


@pytest.mark.parametrize("arch_name", ["llama", "gpt2"])
def test_per_head_masks_keep_other_heads_exactly_zero_through_training(arch_name):
    model = tiny_model(arch_name, n_layers=2, n_heads=4, n_kv_heads=2, hidden=32)
    heads = [(1, 2)]
    peft, arch, modules, masks = _lora(model, [1], rank=4, heads=heads)
    # counted analytically (kept rows/cols only) and on the live model alike
    assert count_trainable(peft, masks) == lora_entries(model, arch, modules, 4, masks)
    params = [p for p in peft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    ids = torch.randint(0, 1000, (2, 12))
    with masked_gradients(peft, masks):
        for _ in range(3):
            peft(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
    base = peft.get_base_model()
    for mask in masks:
        layer = base.get_submodule(mask.module)
        factor = (layer.lora_A if mask.factor == "A" else layer.lora_B)["default"].weight
        keep = mask.shaped(factor).expand_as(factor).bool()
        assert torch.all(factor[~keep] == 0)
        assert torch.any(factor[keep] != 0)
    if arch_name == "gpt2":  # fused c_attn: q, k and v slices of head 2 (d=8) in a 96-wide output
        (attn,) = [m for m in masks if m.module.endswith("c_attn")]
        assert attn.keep == ((16, 24), (48, 56), (80, 88))
    else:  # grouped KV: query head 2 reads KV head 1
        k = next(m for m in masks if m.module.endswith("k_proj"))
        assert k.keep == ((8, 16),) and k.size == 16


def test_summary_loss_equals_full_logits_cross_entropy_on_label_positions():
    model = tiny_model("llama", n_layers=2)
    batch = collate(
        [Encoded(list(range(10, 20)), (0, 6), 7), Encoded(list(range(30, 37)), (0, 4), 5)], 0
    )
    body, head, cap = body_and_head(model)
    ce, n = summary_ce_sum(body, head, batch, cap)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    expected = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), reduction="sum")
    assert n == 3 + 2
    assert ce.item() == pytest.approx(expected.item(), rel=1e-5)


def test_no_autograd_graph_below_the_lowest_adapted_layer():
    model = tiny_model("llama", n_layers=4)
    peft, arch, _, _ = _lora(model, [2])
    seen = {}

    def record(name):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            seen[name] = out.requires_grad

        return hook

    names = {arch.block_name(i): record(i) for i in range(4)}
    body, head, cap = body_and_head(peft)
    batch = collate([Encoded(list(range(10, 20)), (0, 6), 7)], 0)
    with hooks(peft.get_base_model(), forward=names):
        ce, _ = summary_ce_sum(body, head, batch, cap)
    assert seen == {0: False, 1: False, 2: True, 3: True}
    assert ce.requires_grad


def test_circuit_rank_counts_on_smollm2_sizes() -> None:
    """The counts the README states: 921,600 trainable entries either way."""
    model = _smollm2_on_meta()
    arch = Arch.from_model(model)
    per_layer = lora_entries(model, arch, arch.lora_targets([0], ("q", "k", "v", "o")), 1)
    assert per_layer == 3840  # q 576+576, k 576+192, v 576+192, o 576+576
    ranks = reallocated_ranks(30, [5, 15, 21], 8, 4)
    assert 8 * 30 * per_layer == 921_600 == (4 * 27 + sum(ranks.values())) * per_layer
