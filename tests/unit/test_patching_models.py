"""The patching core on tiny random models of the GPT-2, Llama (GQA) and Gemma3 shapes.

The "fine-tuned" model is the tiny base with its q/k/v and MLP weights perturbed: those are
exactly what per-head attention outputs (before W_O) and MLP outputs carry, so patching every
component must reproduce the other model exactly. A fine-tune of *every* weight inside the
decoder blocks (W_O and the norms too) is reproduced by patching every layer node (the block's
write to the residual stream), and not by patching every head and MLP.
"""

from __future__ import annotations

import copy
from contextlib import ExitStack, contextmanager

import numpy as np
import pytest
import torch

from sumcircuit.analysis.causal.patching import (
    Components,
    all_sites,
    capturing,
    dataset_means,
    head_columns,
    hook_tables,
    patch_columns,
    patch_effects,
    patching,
    score,
    shared_prefixes,
    zero_source,
)
from sumcircuit.analysis.causal.resume import recording_residuals, resuming
from sumcircuit.data.batching import Prepared, iter_batches
from sumcircuit.data.prompting import Prompter, collate
from sumcircuit.errors import SumcircuitError
from sumcircuit.models.archs import Arch
from sumcircuit.models.hooks import hooks
from sumcircuit.models.loader import LoadedModel
from sumcircuit.models.pair import check_pair
from sumcircuit.models.tiny import tiny_model

ARCHS = ("gpt2", "llama", "gemma3")
DOCS = [
    ("The council approved the new park on Monday after a long debate. " * 3, "Park approved."),
    (
        "Rain fell across the north of the country, flooding roads.",
        "Floods hit roads in the north.",
    ),
    ("A local team won the cup final for the first time in fifty years. " * 2, "Team wins cup."),
    ("Scientists found a new species of frog in the rainforest.", "New frog species found."),
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def perturbed(
    base: torch.nn.Module, arch: Arch, seed: int = 1, *, every_block_weight: bool = False
) -> torch.nn.Module:
    """A copy of ``base`` with q/k/v and MLP weights perturbed (everything else identical); with
    ``every_block_weight``, every parameter inside the decoder blocks (W_O, biases and norms
    too), but still not the embeddings, the final norm or the LM head."""
    ft = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(seed)
    if every_block_weight:
        params = [p for _, p in sorted(arch.blocks(ft).named_parameters())]
    else:
        params = []
        for layer in range(arch.n_layers):
            names = {arch.proj_name(layer, w) for w in "qkv"} | set(arch.mlp_linear_names(layer))
            params += [ft.get_submodule(name).weight for name in sorted(names)]
    for param in params:
        scale = param.std() if param.numel() > 1 and param.std() > 0 else 0.1  # norms: all 1 or 0
        param.data += 0.5 * scale * torch.randn(param.shape, generator=gen)
    return ft


def _model_pair(
    name: str, tok, *, every_block_weight: bool = False
) -> tuple[LoadedModel, LoadedModel, Prepared]:
    """A tiny ``name`` model, its perturbed copy (see :func:`perturbed`) and DOCS encoded."""
    base = tiny_model(name, seed=0)
    arch = Arch.from_model(base)
    prompter = Prompter(tok, max_length=96)
    encoded = [prompter.encode(doc, summ) for doc, summ in DOCS]
    prepared = Prepared(encoded=encoded, ids=[str(i) for i in range(len(DOCS))], examples=[])
    ft = perturbed(base, arch, every_block_weight=every_block_weight)
    return LoadedModel(base, tok, arch, {}), LoadedModel(ft, tok, arch, {}), prepared


@pytest.fixture(scope="module", params=ARCHS)
def pair(request, gpt2_tok) -> tuple[LoadedModel, LoadedModel, Prepared]:
    return _model_pair(request.param, gpt2_tok)


def _batch(prepared: Prepared, tok):
    return collate(prepared.encoded, tok.pad_token_id)


def _ratios(effects) -> tuple[np.ndarray, np.ndarray]:
    den = (effects.m_ft - effects.m_base).sum()
    suff = (effects.m_suff - effects.m_base[:, None]).sum(0) / den
    nec = (effects.m_ft[:, None] - effects.m_nec).sum(0) / den
    return suff, nec


def test_empty_set_changes_nothing_and_all_layers_recover_everything(pair) -> None:
    base, ft, prepared = pair
    arch = base.arch
    every = Components.from_layers(arch, list(range(arch.n_layers)))
    effects = patch_effects(base, ft, prepared, [Components(), every], batch_size=2)
    assert np.all(effects.m_ft != effects.m_base)  # the perturbation is visible
    np.testing.assert_array_equal(effects.m_suff[:, 0], effects.m_base)  # exactly, bit for bit
    np.testing.assert_array_equal(effects.m_nec[:, 0], effects.m_ft)
    np.testing.assert_allclose(effects.m_suff[:, 1], effects.m_ft, rtol=0, atol=1e-5)
    np.testing.assert_allclose(effects.m_nec[:, 1], effects.m_base, rtol=0, atol=1e-5)
    suff, nec = _ratios(effects)
    assert suff[0] == 0.0 and nec[0] == 0.0
    np.testing.assert_allclose([suff[1], nec[1]], [1.0, 1.0], atol=1e-5)


def _heads_and_mlps(arch: Arch) -> Components:
    every = range(arch.n_layers)
    heads = frozenset((layer, h) for layer in every for h in range(arch.n_heads))
    return Components(heads=heads, mlps=frozenset(every))


def test_every_head_patched_one_by_one_plus_mlps_equals_all_at_once(pair) -> None:
    base, ft, prepared = pair
    arch = base.arch
    batch = _batch(prepared, base.tokenizer)
    sites = all_sites(arch)
    with capturing(ft.model, arch, sites) as ft_acts:
        score(ft.model, arch, batch)
    with patching(base.model, arch, _heads_and_mlps(arch), ft_acts):
        whole = score(base.model, arch, batch)
    with ExitStack() as stack:  # one hook per head, chained on the same module
        for layer in range(arch.n_layers):
            for head in range(arch.n_heads):
                one = Components.from_heads(arch, [(layer, head)])
                stack.enter_context(patching(base.model, arch, one, ft_acts))
        mlps = Components(mlps=frozenset(range(arch.n_layers)))
        stack.enter_context(patching(base.model, arch, mlps, ft_acts))
        by_head = score(base.model, arch, batch)
    assert torch.equal(whole, by_head)


def _block_io(model, arch: Arch, store: dict):
    """Hooks recording each block's (input, output) — registered after any patching hook, so
    they see the patched output."""

    def record(layer: int):
        def hook(module, args, output) -> None:
            store[layer] = (args[0].detach(), output.detach())

        return hook

    return hooks(model, forward={arch.block_name(i): record(i) for i in range(arch.n_layers)})


def test_a_layer_node_is_the_blocks_write_to_the_residual_stream(pair) -> None:
    """Patching layer l sets block l's output to its own live input plus the source's write
    (source output − source input); the MLP node is the module whose output is added to the
    residual (Gemma3: the post-feedforward norm's output)."""
    base, ft, prepared = pair
    arch = base.arch
    batch = _batch(prepared, base.tokenizer)
    ft_io: dict = {}
    with capturing(ft.model, arch, all_sites(arch)) as ft_acts, _block_io(ft.model, arch, ft_io):
        score(ft.model, arch, batch)
    layer = 1
    ft_in, ft_out = ft_io[layer]
    assert torch.equal(ft_acts[("layer", layer)], ft_out - ft_in)
    seen: dict = {}
    comps = Components.from_layers(arch, [layer])
    with patching(base.model, arch, comps, ft_acts), _block_io(base.model, arch, seen):
        score(base.model, arch, batch)
    base_in, patched_out = seen[layer]
    assert not torch.equal(base_in, ft_in)  # the block's own input, not the source's
    assert torch.equal(patched_out, base_in + (ft_out - ft_in))
    assert comps.sites() == [("layer", layer)]
    assert comps.describe() == {"heads": [], "mlps": [], "layers": [layer]}
    with pytest.raises(SumcircuitError, match="patched whole and in parts"):
        Components(heads=frozenset({(layer, 0)}), layers=frozenset({layer}))
    mlp_out = arch.mlp_out_name(layer)
    assert mlp_out.startswith(arch.block_name(layer))
    written: dict = {}
    with hooks(ft.model, forward={mlp_out: lambda m, a, out: written.setdefault("x", out)}):
        score(ft.model, arch, batch)
    assert torch.equal(ft_acts[("mlp", layer)], written["x"])


@pytest.fixture(scope="module", params=ARCHS)
def block_pair(request, gpt2_tok) -> tuple[LoadedModel, LoadedModel, Prepared]:
    """A fine-tune of every weight inside the decoder blocks (W_O and the norms included)."""
    return _model_pair(request.param, gpt2_tok, every_block_weight=True)


def test_every_layer_node_carries_a_fine_tune_of_every_block_weight(block_pair) -> None:
    """f(all) = 1 at layer level when the fine-tune changed W_O and the norms as well; every head
    and MLP patched at once leaves those changes with the target model and falls short."""
    base, ft, prepared = block_pair
    arch = base.arch
    every = Components.from_layers(arch, range(arch.n_layers))
    sets = [every, _heads_and_mlps(arch)]
    effects = patch_effects(base, ft, prepared, sets, batch_size=2)
    gap = np.abs(effects.m_ft - effects.m_base)
    assert gap.min() > 1e-3  # the perturbation is visible
    # the same numbers up to float32 rounding of input + (output − input)
    np.testing.assert_allclose(effects.m_suff[:, 0], effects.m_ft, rtol=0, atol=1e-5)
    np.testing.assert_allclose(effects.m_nec[:, 0], effects.m_base, rtol=0, atol=1e-5)
    assert np.abs(effects.m_suff[:, 1] - effects.m_ft).max() > 0.01 * gap.max()
    assert np.abs(effects.m_nec[:, 1] - effects.m_base).max() > 0.01 * gap.max()


def test_patching_head_changes_only_that_heads_slice(pair) -> None:
    base, ft, prepared = pair
    arch = base.arch
    batch = _batch(prepared, base.tokenizer)
    layer, head, d = arch.n_layers - 1, 1, arch.head_dim
    site = ("attn", layer)
    with capturing(ft.model, arch, [site]) as ft_acts:
        score(ft.model, arch, batch)
    with capturing(base.model, arch, [site]) as clean:
        score(base.model, arch, batch)
    comps = Components.from_heads(arch, [(layer, head)])
    with patching(base.model, arch, comps, ft_acts), capturing(base.model, arch, [site]) as seen:
        score(base.model, arch, batch)  # the capture hook runs after the patch hook
    sl = slice(head * d, (head + 1) * d)
    assert torch.equal(seen[site][..., sl], ft_acts[site][..., sl])
    rest = torch.ones(arch.n_heads * d, dtype=torch.bool)
    rest[sl] = False
    assert torch.equal(seen[site][..., rest], clean[site][..., rest])
    assert not torch.equal(clean[site][..., sl], ft_acts[site][..., sl])


def test_hooks_leave_no_trace(pair) -> None:
    base, ft, prepared = pair
    arch = base.arch
    batch = _batch(prepared, base.tokenizer)
    before = score(base.model, arch, batch)
    blocks = list(arch.blocks(base.model))
    sites = all_sites(arch)
    with capturing(ft.model, arch, sites) as ft_acts:
        score(ft.model, arch, batch)
    with patching(base.model, arch, Components.from_layers(arch, [0, 1]), ft_acts):
        assert not torch.equal(score(base.model, arch, batch), before)
    with (
        pytest.raises(RuntimeError),
        patching(base.model, arch, Components.from_layers(arch, [0]), zero_source(arch, sites)),
    ):
        raise RuntimeError("the body fails")
    assert torch.equal(score(base.model, arch, batch), before)
    assert list(arch.blocks(base.model)) == blocks  # patched blocks are back
    for module in base.model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_score_matches_a_direct_log_softmax(pair) -> None:
    base, _, prepared = pair
    batch = _batch(prepared, base.tokenizer)
    m = score(base.model, base.arch, batch)
    with torch.no_grad():
        logits = base.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logp = torch.log_softmax(logits.double(), -1)  # (B, T, V)
    for row in range(len(DOCS)):
        pos = batch.summary_mask[row].nonzero()[:, 0]
        expected = logp[row, pos, batch.labels[row, pos]].mean()
        assert m[row].item() == pytest.approx(expected.item(), abs=1e-5)


def test_batched_and_one_by_one_agree(pair) -> None:
    base, ft, prepared = pair
    sets = [Components.from_layers(base.arch, [1]), Components.from_heads(base.arch, [(0, 2)])]
    batched = patch_effects(base, ft, prepared, sets, batch_size=4, ablation="zero")
    single = patch_effects(base, ft, prepared, sets, batch_size=1, ablation="zero")
    for name in ("m_base", "m_ft", "m_suff", "m_nec"):
        np.testing.assert_allclose(getattr(batched, name), getattr(single, name), atol=1e-5)


def test_mean_ablation_uses_the_region_mean(pair) -> None:
    base, ft, prepared = pair
    arch = base.arch
    comps = Components.from_layers(arch, [0])
    mean = patch_effects(base, ft, prepared, [comps], batch_size=4, ablation="mean")
    zero = patch_effects(base, ft, prepared, [comps], batch_size=4, ablation="zero")
    assert not np.allclose(mean.m_nec, zero.m_nec)
    assert mean.n_forwards == zero.n_forwards + 1  # the first pass over the data
    idx, batch = next(iter_batches(prepared.encoded, 4, base.tokenizer.pad_token_id))
    with capturing(ft.model, arch, [("mlp", 0)]) as acts:
        score(ft.model, arch, batch)
    region = batch.region("all")
    expected = acts[("mlp", 0)][region].double().mean(0).float()
    got = dataset_means(ft, prepared, [("mlp", 0)], batch_size=4)[("mlp", 0)]
    torch.testing.assert_close(got, expected)


def test_check_pair_rejects_incompatible_and_identical_models(pair, gpt2_tok) -> None:
    base, ft, _ = pair
    with pytest.raises(SumcircuitError, match="identical weights"):
        check_pair(base, LoadedModel(copy.deepcopy(base.model), gpt2_tok, base.arch, {}))
    other = tiny_model("gpt2" if base.arch.spec.model_type != "gpt2" else "llama")
    with pytest.raises(SumcircuitError, match="different architectures"):
        check_pair(base, LoadedModel(other, gpt2_tok, Arch.from_model(other), {}))
    tok = copy.deepcopy(gpt2_tok)
    tok.add_tokens(["<extra-token>"])
    with pytest.raises(SumcircuitError, match="tokenizers have different vocabularies"):
        check_pair(base, LoadedModel(ft.model, tok, ft.arch, {}))
    resized = copy.deepcopy(ft.model)
    resized.resize_token_embeddings(resized.get_input_embeddings().weight.shape[0] + 8)
    with pytest.raises(SumcircuitError, match=r"different vocabularies \(\d+ vs \d+ embedding"):
        check_pair(base, LoadedModel(resized, gpt2_tok, ft.arch, {}), stage="validate")
    with pytest.raises(SumcircuitError, match="for scan"):  # the message names the stage
        check_pair(base, base, stage="scan")
    check_pair(base, base, allow_identical=True)  # diff: a model against itself is allowed
    check_pair(base, ft)  # a real pair passes


# -- resuming at the lowest patched layer ------------------------------------------------------
# lowest patched layers n_layers (nothing patched), 0, 1, 2, 2, 3, 1 (tiny models have 4 layers)
def _resume_sets(arch: Arch) -> list[Components]:
    return [
        Components(),
        Components.from_heads(arch, [(0, 1), (2, 3)]),
        Components.from_layers(arch, [1, 3]),
        Components(mlps=frozenset({2})),
        Components(heads=frozenset({(3, 0), (2, 1)}), mlps=frozenset({3})),
        Components.from_layers(arch, [3]),
        Components(heads=frozenset({(1, 2)}), mlps=frozenset({2}), layers=frozenset({3})),
    ]


@contextmanager
def _hooked(model, arch: Arch, comps: Components, source):
    """Patching by hooks alone, every block run: a layer node's block computes, then its write is
    replaced (``output := input + write``) — what patching did before patched blocks stood in."""
    fns = {}
    for kind, layer in comps.sites():
        width = source[(kind, layer)].shape[-1]
        if kind == "attn":
            columns = head_columns(comps.heads_of(layer), arch.n_heads, arch.head_dim)
        else:
            columns = torch.ones(width, dtype=torch.bool)
        fns[(kind, layer)] = lambda x, s=source[(kind, layer)], c=columns: patch_columns(x, s, c)
    forward, pre = hook_tables(arch, fns)
    with hooks(model, forward=forward, pre=pre):
        yield


def _full_recompute(base, ft, prepared, sets, ablation: str) -> tuple[np.ndarray, np.ndarray]:
    """The reference: every patched forward runs every block (no resuming, no stand-in blocks),
    batch by batch."""
    arch = base.arch
    sites = all_sites(arch)
    fixed = None
    if ablation == "mean":
        fixed = dataset_means(ft, prepared, sites, batch_size=2)
    elif ablation == "zero":
        fixed = zero_source(arch, sites)
    suff = np.full((len(prepared), len(sets)), np.nan)
    nec = np.full((len(prepared), len(sets)), np.nan)
    for idx, batch in iter_batches(prepared.encoded, 2, base.tokenizer.pad_token_id):
        with capturing(base.model, arch, sites) as base_acts:
            score(base.model, arch, batch)
        with capturing(ft.model, arch, sites) as ft_acts:
            score(ft.model, arch, batch)
        for j, comps in enumerate(sets):
            with _hooked(base.model, arch, comps, ft_acts):
                suff[idx, j] = score(base.model, arch, batch).numpy()
            with _hooked(ft.model, arch, comps, fixed or base_acts):
                nec[idx, j] = score(ft.model, arch, batch).numpy()
    return suff, nec


@pytest.mark.parametrize("ablation", ["patch", "mean", "zero"])
def test_resumed_forwards_equal_full_recomputation(pair, ablation) -> None:
    base, ft, prepared = pair
    sets = _resume_sets(base.arch)
    effects = patch_effects(base, ft, prepared, sets, batch_size=2, ablation=ablation)
    suff, nec = _full_recompute(base, ft, prepared, sets, ablation)
    np.testing.assert_array_equal(effects.m_suff, suff)  # bit for bit
    np.testing.assert_array_equal(effects.m_nec, nec)
    assert not np.allclose(effects.m_suff[:, 2], effects.m_base)  # the sets do change m
    starts = [base.arch.n_layers, 0, 1, 2, 2, 3, 1]
    patched_layers = [0, 0, 2, 0, 0, 1, 1]  # blocks that stand in as input + write
    # 2 batches, 2 directions
    assert effects.n_layer_forwards_skipped == 2 * (sum(starts) + sum(patched_layers)) * 2


def _sharing_sets(arch: Arch) -> list[Components]:
    return [
        Components.from_layers(arch, [1, 2]),
        Components.from_layers(arch, [1, 3]),  # as the first below layer 2
        Components.from_layers(arch, [1]),  # as the second below layer 3 (the first: below 2)
        Components(heads=frozenset({(1, 0)}), mlps=frozenset({2})),  # differs at layer 1
        Components(heads=frozenset({(1, 0)}), mlps=frozenset({3})),  # as the fourth below 2
        Components.from_layers(arch, [1, 3]),  # the second again: nothing left to run
    ]


@pytest.mark.parametrize("ablation", ["patch", "mean"])
def test_sets_that_agree_below_a_layer_share_the_stream_there(pair, ablation) -> None:
    """A set starts where its nodes first differ from an earlier set's, from the stream that
    set's patched forward left there — the same numbers, bit for bit, as every block run."""
    base, ft, prepared = pair
    sets = _sharing_sets(base.arch)
    assert shared_prefixes(base.arch, sets) == [
        (1, None),
        (2, 0),
        (3, 1),
        (1, None),
        (2, 3),
        (base.arch.n_layers, 1),
    ]
    effects = patch_effects(base, ft, prepared, sets, batch_size=2, ablation=ablation)
    suff, nec = _full_recompute(base, ft, prepared, sets, ablation)
    np.testing.assert_array_equal(effects.m_suff, suff)  # bit for bit
    np.testing.assert_array_equal(effects.m_nec, nec)
    assert len({tuple(effects.m_suff[:, j]) for j in range(5)}) == 5  # the sets differ
    # not run per set: below its start, and its layer nodes at or above it (2 batches, 2 ways)
    starts, standing = [1, 2, 3, 1, 2, 4], [2, 1, 0, 0, 0, 0]
    assert effects.n_layer_forwards_skipped == 2 * (sum(starts) + sum(standing)) * 2


def test_blocks_below_the_lowest_patched_layer_do_not_run(pair) -> None:
    base, ft, prepared = pair
    arch = base.arch
    calls = {name: [0] * arch.n_layers for name in ("base", "ft")}

    def counter(name: str, layer: int):
        def count(module, args) -> None:
            calls[name][layer] += 1

        return count

    sets = [Components.from_layers(arch, [2]), Components.from_heads(arch, [(3, 0)])]
    with ExitStack() as stack:
        for name, loaded in (("base", base), ("ft", ft)):
            pre = {arch.block_name(i): counter(name, i) for i in range(arch.n_layers)}
            stack.enter_context(hooks(loaded.model, pre=pre))
        effects = patch_effects(base, ft, prepared, sets, batch_size=4)
    # one batch: the clean forward runs every block; the layer-2 set adds block 3 (block 2 is
    # patched whole: it stands in as input + write), the head set from layer 3 adds block 3, in
    # each model (sufficiency in base, necessity in ft)
    for name in ("base", "ft"):
        assert calls[name] == [1, 1, 1, 3]
    assert effects.n_layer_forwards_skipped == (2 + 1 + 3) * 2
    assert all(block is not None for block in arch.blocks(base.model))


def test_resuming_restores_the_blocks_and_checks_its_input(pair) -> None:
    base, _, prepared = pair
    arch = base.arch
    batch = _batch(prepared, base.tokenizer)
    before = list(arch.blocks(base.model))
    with recording_residuals(base.model, arch, [2]) as residuals:
        clean = score(base.model, arch, batch)
    with pytest.raises(RuntimeError), resuming(base.model, arch, 2, residuals):
        assert arch.blocks(base.model)[0] is not before[0]
        raise RuntimeError("the body fails")
    assert list(arch.blocks(base.model)) == before
    with resuming(base.model, arch, 2, residuals):
        assert torch.equal(score(base.model, arch, batch), clean)
    one = collate(prepared.encoded[:1], base.tokenizer.pad_token_id)
    with pytest.raises(SumcircuitError, match="resume only the batch"):
        with resuming(base.model, arch, 2, residuals):
            score(base.model, arch, one)
    with pytest.raises(SumcircuitError, match="no residual stream recorded for layer 3"):
        with resuming(base.model, arch, 3, residuals):
            pass
    with pytest.raises(SumcircuitError, match="cannot resume at layer 5"):
        with recording_residuals(base.model, arch, [5]):
            pass
    assert list(arch.blocks(base.model)) == before
    for module in base.model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
