"""Attribution patching on tiny models: exact where the model is linear, complete along the
activation path, and the layer score is its own node's — the block's write to the residual
stream, the node exact layer patching replaces — not the sum of its heads and MLP.

Models run in float64 so that the small effects of the linear regime are far above rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_patching_models import DOCS, perturbed
from torch.overrides import TorchFunctionMode

from sumcircuit.analysis.causal.attribution import attribute
from sumcircuit.analysis.causal.patching import Components, patch_effects
from sumcircuit.data.batching import Prepared
from sumcircuit.data.prompting import Prompter
from sumcircuit.errors import SumcircuitError
from sumcircuit.models.archs import Arch
from sumcircuit.models.loader import LoadedModel
from sumcircuit.models.tiny import PEAKED_STD, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _pair(arch_name: str, gpt2_tok, scale: float, *, every_block_weight: bool = False):
    base = tiny_model(
        arch_name, seed=0, n_layers=2, init_std=PEAKED_STD, attn_implementation="sdpa"
    ).double()
    arch = Arch.from_model(base)
    ft = perturbed(base, arch, every_block_weight=every_block_weight)
    with torch.no_grad():  # ft = base + scale * (perturbation)
        for p_ft, p_base in zip(ft.parameters(), base.parameters(), strict=True):
            p_ft.copy_(p_base + scale * (p_ft - p_base))
    prompter = Prompter(gpt2_tok, max_length=96)
    encoded = [prompter.encode(doc, summ) for doc, summ in DOCS]
    prepared = Prepared(encoded=encoded, ids=[str(i) for i in range(len(DOCS))], examples=[])
    return LoadedModel(base, gpt2_tok, arch, {}), LoadedModel(ft, gpt2_tok, arch, {}), prepared


def _exact_singles(base, ft, prepared):
    """Exact effects of each single head, then each single MLP: (n_docs, L*H + L) each."""
    arch = base.arch
    sets = [
        Components.from_heads(arch, [(layer, h)])
        for layer in range(arch.n_layers)
        for h in range(arch.n_heads)
    ]
    sets += [Components(mlps=frozenset({layer})) for layer in range(arch.n_layers)]
    effects = patch_effects(base, ft, prepared, sets, batch_size=2)
    suff = effects.m_suff - effects.m_base[:, None]
    nec = effects.m_ft[:, None] - effects.m_nec
    return effects, suff, nec


class _Float64Throughout(TorchFunctionMode):
    """Keeps float64 tensors float64 where transformers' RMSNorms cast them to float32
    (``x.float()``, ``x.to(torch.float32)``), which would put a float32 noise floor (~1e-7
    relative) under the small effects of the linear regime. Test-only: the models are unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.float, torch.Tensor.to) and _to_float32(func, args, kwargs):
            return args[0]
        return func(*args, **kwargs)


def _to_float32(func, args: tuple, kwargs: dict) -> bool:
    if not (torch.is_tensor(args[0]) and args[0].dtype == torch.float64):
        return False
    return func is torch.Tensor.float or torch.float32 in (*args[1:], kwargs.get("dtype"))


# Every model runs wholly in float64 (:class:`_Float64Throughout` keeps the RMSNorms of Llama and
# Gemma3 from casting to float32): agreement to 1e-3 of the largest effect (measured ~1e-4, the
# second-order term), while a wrong gradient path is off by 10-100%.
@pytest.mark.parametrize("arch_name", ["gpt2", "llama", "gemma3"])
def test_atp_equals_exact_patching_in_the_linear_regime(arch_name, gpt2_tok) -> None:
    with _Float64Throughout():
        _check_node_estimates(arch_name, gpt2_tok, scale=1e-5, tolerance=1e-3)


def _check_node_estimates(arch_name: str, gpt2_tok, *, scale: float, tolerance: float) -> None:
    base, ft, prepared = _pair(arch_name, gpt2_tok, scale=scale)
    effects, suff, nec = _exact_singles(base, ft, prepared)
    att = attribute(base, ft, prepared, batch_size=2, method="atp")
    np.testing.assert_allclose(att.m_base, effects.m_base, rtol=1e-12)
    np.testing.assert_allclose(att.m_ft, effects.m_ft, rtol=1e-12)
    n = len(prepared)
    estimate_suff = np.concatenate([att.heads_suff.reshape(n, -1), att.mlps_suff], axis=1)
    estimate_nec = np.concatenate([att.heads_nec.reshape(n, -1), att.mlps_nec], axis=1)
    largest = np.abs(suff).max()
    assert largest > 1e-9  # a real effect
    np.testing.assert_allclose(estimate_suff, suff, rtol=0, atol=tolerance * largest)
    np.testing.assert_allclose(estimate_nec, nec, rtol=0, atol=tolerance * largest)


# The layer node in the linear regime, with W_O and the norms fine-tuned too: the estimate of the
# block's write equals the exact layer patch (measured: the second-order term, ~1e-4 of the
# largest effect at scale 1e-5); the old node, the sum of the layer's heads and MLP, misses by
# ~60-85% — it counts a head's effect through its own MLP twice and W_O and the norms not at all.
@pytest.mark.parametrize("arch_name", ["gpt2", "llama", "gemma3"])
def test_layer_atp_equals_the_exact_layer_patch_in_the_linear_regime(arch_name, gpt2_tok) -> None:
    with _Float64Throughout():
        _check_layer_estimates(arch_name, gpt2_tok, scale=1e-5, tolerance=1e-3)


def _check_layer_estimates(arch_name: str, gpt2_tok, *, scale: float, tolerance: float) -> None:
    base, ft, prepared = _pair(arch_name, gpt2_tok, scale=scale, every_block_weight=True)
    arch = base.arch
    sets = [Components.from_layers(arch, [layer]) for layer in range(arch.n_layers)]
    effects = patch_effects(base, ft, prepared, sets, batch_size=2)
    suff = effects.m_suff - effects.m_base[:, None]  # (n_docs, L)
    nec = effects.m_ft[:, None] - effects.m_nec
    largest = np.abs(suff).max()
    assert largest > 1e-9  # a real effect
    for method in ("atp", "ig-weights"):
        att = attribute(base, ft, prepared, batch_size=2, method=method, steps=2)
        np.testing.assert_allclose(att.layers_suff, suff, rtol=0, atol=tolerance * largest)
        np.testing.assert_allclose(att.layers_nec, nec, rtol=0, atol=tolerance * largest)
    old = att.heads_suff.sum(-1) + att.mlps_suff  # the heads+MLP sum the layer score once was
    assert np.abs(old - suff).max() > 10 * tolerance * largest


def test_ig_direct_adds_up_to_patching_every_site(gpt2_tok, caplog) -> None:
    base, ft, prepared = _pair("llama", gpt2_tok, scale=1.0)
    arch = base.arch
    heads = frozenset((layer, h) for layer in range(arch.n_layers) for h in range(arch.n_heads))
    every = Components(heads=heads, mlps=frozenset(range(arch.n_layers)))
    effects = patch_effects(base, ft, prepared, [every], batch_size=2, necessity=False)
    total = effects.m_suff[:, 0] - effects.m_base  # (n_docs,)
    att = attribute(base, ft, prepared, batch_size=2, method="ig-activations", steps=32)
    assert att.method == "ig-direct"  # the old name, renamed for what it measures
    assert "ig-activations is deprecated" in caplog.text and "direct effects only" in caplog.text
    summed = att.heads_suff.sum((1, 2)) + att.mlps_suff.sum(1)
    assert np.abs(total).min() > 1e-3  # far from the linear regime: completeness is the point
    np.testing.assert_allclose(summed, total, rtol=1e-3)
    plain = attribute(base, ft, prepared, batch_size=2, method="atp")
    atp_sum = plain.heads_suff.sum((1, 2)) + plain.mlps_suff.sum(1)
    assert np.abs(atp_sum - total).max() > 10 * np.abs(summed - total).max()  # IG is what closes it


def test_ig_weights_agrees_with_atp_in_the_linear_regime(gpt2_tok) -> None:
    base, ft, prepared = _pair("gpt2", gpt2_tok, scale=1e-5)
    atp = attribute(base, ft, prepared, batch_size=2, method="atp")
    ig = attribute(base, ft, prepared, batch_size=2, method="ig-weights", steps=2)
    scale = np.abs(atp.layers_suff).max()
    np.testing.assert_allclose(ig.layers_suff, atp.layers_suff, rtol=0, atol=1e-3 * scale)
    # a path-averaged gradient read from either end: its necessity is its sufficiency
    np.testing.assert_array_equal(ig.heads_nec, ig.heads_suff)
    np.testing.assert_array_equal(ig.mlps_nec, ig.mlps_suff)


def test_every_node_from_one_pass_and_bad_options_are_refused(gpt2_tok) -> None:
    base, ft, prepared = _pair("llama", gpt2_tok, scale=1.0)
    att = attribute(base, ft, prepared, batch_size=4, method="atp")
    n, L, H = len(prepared), base.arch.n_layers, base.arch.n_heads
    assert att.heads_suff.shape == (n, L, H) and att.layers_nec.shape == (n, L)
    assert np.isfinite(att.layers_nec).all() and np.isfinite(att.mlps_nec).all()
    assert not np.allclose(att.layers_suff, att.heads_suff.sum(-1) + att.mlps_suff)
    assert att.n_passes == 2  # one batch: a forward+backward in each model
    with pytest.raises(SumcircuitError, match="unknown method"):
        attribute(base, ft, prepared, batch_size=4, method="eap")
    with pytest.raises(SumcircuitError, match="at least 1"):
        attribute(base, ft, prepared, batch_size=4, method="ig-weights", steps=0)
