"""The model, patching, training and generation paths on ``SUMCIRCUIT_TEST_DEVICE``.

``cpu`` by default, so these run in every test session; ``benchmarks/gpu_smoke.sh`` runs them
with ``cuda``. Each compares the device's result with an independent computation on the CPU
(eager attention, full logits, one prompt at a time), so they check the device path and the
code path at once.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sumcircuit.analysis.causal.patching import Components, patch_effects
from sumcircuit.data.batching import Prepared
from sumcircuit.data.prompting import IGNORE_INDEX, Prompter, collate
from sumcircuit.distributed import Processes
from sumcircuit.evaluation.generate import generate_ids
from sumcircuit.models.archs import Arch
from sumcircuit.models.loader import LoadedModel
from sumcircuit.models.tiny import PEAKED_STD, tiny_model
from sumcircuit.training.config import FinetuneConfig
from sumcircuit.training.loop import train_step
from sumcircuit.training.select import select_adapters

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ARCHS = ("gpt2", "llama", "gemma3")
DOCS = [
    ("The council approved the new park on Monday after a long debate. " * 3, "Park approved."),
    ("Rain fell across the north of the country, flooding roads.", "Floods hit the north."),
    ("A local team won the cup final for the first time in fifty years. " * 2, "Team wins cup."),
]


@pytest.fixture(scope="module")
def prepared(gpt2_tok) -> Prepared:
    prompter = Prompter(gpt2_tok, max_length=96)
    encoded = [prompter.encode(doc, summary) for doc, summary in DOCS]
    return Prepared(encoded=encoded, ids=[str(i) for i in range(len(DOCS))], examples=[])


def _inputs(batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "input_ids": batch.input_ids.to(device),
        "attention_mask": batch.attention_mask.to(device),
    }


@pytest.mark.parametrize("arch", ARCHS)
def test_sdpa_forward_on_device_matches_eager_on_cpu(arch, run_device, gpt2_tok, prepared):
    batch = collate(prepared.encoded, gpt2_tok.pad_token_id)
    eager = tiny_model(arch, seed=0, attn_implementation="eager")
    sdpa = tiny_model(arch, seed=0, attn_implementation="sdpa").to(run_device)
    with torch.no_grad():
        expected = eager(**_inputs(batch, torch.device("cpu"))).logits
        got = sdpa(**_inputs(batch, run_device)).logits
    assert got.device.type == run_device.type
    real = batch.attention_mask.bool()  # padded positions' logits are not defined
    torch.testing.assert_close(got.cpu()[real], expected[real], atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_patching_on_device_matches_cpu(arch, run_device, gpt2_tok, prepared):
    def pair(device: torch.device) -> tuple[LoadedModel, LoadedModel]:
        base, ft = (tiny_model(arch, seed=s).to(device) for s in (0, 1))
        return (LoadedModel(m, gpt2_tok, Arch.from_model(m), {}) for m in (base, ft))

    arch_ = Arch.from_model(tiny_model(arch))
    sets = [
        Components(),
        Components.from_layers(arch_, [1]),
        Components.from_heads(arch_, [(0, 0), (2, 1)]),
    ]
    on_cpu = patch_effects(*pair(torch.device("cpu")), prepared, sets, batch_size=2)
    on_device = patch_effects(*pair(run_device), prepared, sets, batch_size=2)
    np.testing.assert_array_equal(on_device.m_suff[:, 0], on_device.m_base)  # nothing patched
    assert np.all(on_device.m_suff[:, 1] != on_device.m_base)  # a patched layer changes m
    for name in ("m_base", "m_ft", "m_suff", "m_nec"):
        np.testing.assert_allclose(
            getattr(on_device, name), getattr(on_cpu, name), atol=1e-4, rtol=0, err_msg=name
        )


def test_lora_train_step_on_device_gives_the_full_logit_loss(run_device, gpt2_tok, prepared):
    """At initialisation (B = 0) the adapted model is the base model: the step's loss equals the
    summary-token cross-entropy of the plain model's full logits on the CPU."""
    batch = collate(prepared.encoded, gpt2_tok.pad_token_id)
    reference = tiny_model("llama", seed=0)
    with torch.no_grad():
        logits = reference(**_inputs(batch, torch.device("cpu"))).logits
    where = batch.labels != IGNORE_INDEX
    expected = F.cross_entropy(logits[where], batch.labels[where]).item()

    model = tiny_model("llama", seed=0, attn_implementation="sdpa").to(run_device)
    loaded = LoadedModel(model, gpt2_tok, Arch.from_model(model), {})
    config = FinetuneConfig(
        model="tiny", out="-", method="lora", layers=[2, 3], batch_size=4, precision="fp32"
    )
    adapted = select_adapters(config, loaded).model
    adapted.train()
    params = [p for p in adapted.parameters() if p.requires_grad]
    procs = Processes(0, 1, run_device)
    loss, n_summary, _ = train_step(
        adapted, params, prepared, list(range(len(DOCS))), config, procs, gpt2_tok.pad_token_id
    )
    assert n_summary == int(where.sum())
    assert loss == pytest.approx(expected, abs=1e-4)
    grads = [p.grad for p in params if p.grad is not None]
    assert grads and all(g.device.type == run_device.type for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)  # lora_B gets a gradient


@pytest.mark.parametrize("arch", ("llama", "gemma3"))
def test_batched_generation_on_device_matches_one_prompt_at_a_time_on_cpu(
    arch, run_device, gpt2_tok
):
    prompter = Prompter(gpt2_tok, max_length=96)
    prompts = [prompter.encode(doc, None, reserve=8) for doc, _ in DOCS]
    model = tiny_model(arch, seed=0, init_std=PEAKED_STD, attn_implementation="sdpa")
    on_cpu = copy.deepcopy(model)
    expected = [
        generate_ids(on_cpu, gpt2_tok, [p], batch_size=1, max_new_tokens=8, progress=False)[0]
        for p in prompts
    ]
    got = generate_ids(
        model.to(run_device), gpt2_tok, prompts, batch_size=3, max_new_tokens=8, progress=False
    )
    assert sum(len(g) for g in got) > len(got)  # summaries, not one stop token each
    assert got == expected
