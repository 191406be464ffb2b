"""Attribution patching: a gradient estimate of every component's patching effect at once.

Same nodes and metric as :mod:`sumcircuit.analysis.causal.patching` (per-head attention outputs
before the output projection, MLP writes, and each decoder layer's write to the residual stream
``delta_l = block output − block input``; m = mean log-likelihood per summary token). A layer's
estimate is its own node's, (delta_ft − delta_base) · ∂m/∂(block output) — the node the exact
layer patch replaces (block output := block input + delta_ft) — not the sum of its heads and MLP,
which would count a head's effect through its own layer's MLP twice and miss ``W_O`` and the
norms. Both models see the same tokens, so unlike clean/corrupt attribution there is no
same-length restriction. For a site with activations a_base, a_ft on a document, summed over its
positions (and, for a head, over that head's columns):

- ``atp`` (AtP, Nanda; Kramár et al. 2024): sufficiency_c ≈ Σ (a_ft − a_base) · ∂m/∂a in the
  base model — what patching c in from the fine-tuned model would add; necessity_c ≈
  Σ (a_ft − a_base) · ∂m/∂a in the fine-tuned model — what patching c from the base model
  would take away. Exact in the linear regime.
- ``atp-trapezoid``: the mean of atp's two end gradients, Σ (a_ft − a_base) · ½ (∂m/∂a|base +
  ∂m/∂a|ft) — the trapezoid rule on the path from base to fine-tuned, exact when the gradient
  changes linearly along it. It is the mean of atp's sufficiency and necessity, so the atp run
  gives it at no extra cost (the ``atp-trapezoid`` locator reads the atp result); being one
  estimate of the path from either end, it is both its sufficiency and its necessity.
- ``ig-direct`` (formerly ``ig-activations``, still accepted with a deprecation warning): the
  gradient averaged over K midpoints α of the path on which *every* site of the base model is
  *set* to a_base + α (a_ft − a_base) (every head and MLP site; a layer node's gradient is read
  on that same path, where only the residual stream carries it on: its direct effect). Holding
  every site at its interpolated value cuts each
  component's effect through later sites, so this measures **direct effects only** (how far
  its layer scores follow exact patching: benchmarks/RESULTS.md); its scores
  add up (to the quadrature error) to the effect of patching every site at once. EAP-IG's
  activation variant — one node interpolated at a time with everything downstream live —
  would cost K forward and backward passes *per node* (per batch: K · L for layers, K · L · H
  for heads, against L or L · H forwards for the exact scan itself), so it is not offered:
  the exact scan is cheaper than that estimate of it. ``ig-direct`` is no candidate for the
  study's circuit (``locate --score faithful`` never picks it).
- ``ig-weights``: the gradient averaged over K midpoints of the path of models
  θ_base + α (θ_ft − θ_base), each site left free so that its effect through later sites stays
  alive (as EAP-IG keeps it by interpolating inputs). This is a **path-averaged gradient**, not
  integrated gradients: the path is one of weights, not of the activations being attributed,
  so the scores need not add up to any patching effect (no completeness).

For the two path methods the necessity equals the sufficiency: the same path integral read
from the other end (fine-tuned to base) gives the same number.

Gradients reach the activations through a zero ``delta`` added at each site by a hook
(``a + delta``, ``delta`` requiring grad; for a layer node, added to the block's write, so to its
output): ∂m/∂delta = ∂m/∂a including every path through later layers, while the model's own
weights need no gradient. One forward and backward gives all three kinds of node. Written by hand because neither peft nor
transformers offers attribution patching, and TransformerLens/EAP-IG would need a conversion of
the model that our architecture table already makes unnecessary.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sumcircuit.analysis.causal.patching import (
    Site,
    all_sites,
    capturing,
    hook_tables,
    loglik,
    score,
)
from sumcircuit.data.batching import Prepared, iter_batches
from sumcircuit.data.prompting import Batch
from sumcircuit.errors import SumcircuitError
from sumcircuit.models.archs import Arch
from sumcircuit.models.hooks import hooks
from sumcircuit.models.loader import LoadedModel

log = logging.getLogger(__name__)

Method = Literal["atp", "ig-direct", "ig-weights"]
METHODS: tuple[str, ...] = ("atp", "ig-direct", "ig-weights")
#: Old method names, accepted with a deprecation warning: ``ig-activations`` measured direct
#: effects only, and says so under its new name.
RENAMED_METHODS = {"ig-activations": "ig-direct"}


def method_name(name: str) -> str:
    """``name``, or the current name of a renamed method (with a deprecation warning)."""
    if name in RENAMED_METHODS:
        log.warning(
            "attribution method %s is deprecated: it holds every site at its interpolated value "
            "and so measures direct effects only; use %s",
            name,
            RENAMED_METHODS[name],
        )
        return RENAMED_METHODS[name]
    return name


@dataclass
class Attribution:
    """Per-document estimated effects (documents in ``Prepared`` order).

    heads_suff: (n_docs, L, H), mlps_suff: (n_docs, L), layers_suff: (n_docs, L) — estimated
    m_patch − m_base of patching that node into the base model; ``*_nec``: estimated
    m_ft − m_patch of patching it from the base into the fine-tuned model (for the path methods
    the same numbers: see the module docstring); m_base, m_ft: (n_docs,).
    A layer's score is its own node's (the block's write to the residual stream), the node exact
    layer patching replaces — not the sum of its heads and MLP.
    """

    method: str
    heads_suff: np.ndarray
    mlps_suff: np.ndarray
    layers_suff: np.ndarray
    heads_nec: np.ndarray
    mlps_nec: np.ndarray
    layers_nec: np.ndarray
    m_base: np.ndarray
    m_ft: np.ndarray
    n_passes: int = 0


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """No weight gradients inside the block (only activations need them)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def site_gradients(
    model: nn.Module,
    arch: Arch,
    batch: Batch,
    sites: list[Site],
    values: Mapping[Site, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[Site, torch.Tensor], dict[Site, torch.Tensor]]:
    """One forward and backward: ``(m (B,), activations, ∂Σm/∂activation)`` per site.

    With ``values``, each site it names is *set* to ``values[site]`` ((B, T, D)) instead of
    computed, so the gradient is the partial derivative with those sites held fixed; sites it
    does not name stay free. A layer site's activation is the block's write (output − input).
    """
    acts: dict[Site, torch.Tensor] = {}
    deltas: dict[Site, torch.Tensor] = {}

    def at(site: Site):
        def add_delta(x: torch.Tensor) -> torch.Tensor:
            held = values is not None and site in values
            base = values[site].to(dtype=x.dtype, device=x.device) if held else x
            acts[site] = base.detach()
            deltas[site] = torch.zeros_like(base, requires_grad=True)
            return base + deltas[site]

        return add_delta

    forward, pre = hook_tables(arch, {site: at(site) for site in sites})
    with torch.enable_grad(), _frozen(model), hooks(model, forward=forward, pre=pre):
        m = loglik(model, arch, batch)  # (B,)
        grads = torch.autograd.grad(m.sum(), [deltas[s] for s in sites], allow_unused=True)
    out = {
        site: torch.zeros_like(acts[site]) if g is None else g.detach()
        for site, g in zip(sites, grads, strict=True)
    }
    return m.detach().cpu(), acts, out


def _contributions(
    arch: Arch,
    diff: Mapping[Site, torch.Tensor],
    grads: Mapping[Site, torch.Tensor],
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Σ over real positions of diff · grad: heads (B, L, H), MLPs (B, L), layers (B, L), float64."""
    keep = mask.to(torch.float64)[..., None]  # (B, T, 1)

    def product(site: Site) -> torch.Tensor:  # (B, T, D)
        return diff[site].double() * grads[site].double() * keep

    heads, mlps, layers = [], [], []
    for layer in range(arch.n_layers):
        prod = product(("attn", layer))
        b, t, _ = prod.shape
        heads.append(prod.reshape(b, t, arch.n_heads, arch.head_dim).sum((1, 3)))  # (B, H)
        mlps.append(product(("mlp", layer)).sum((1, 2)))  # (B,)
        layers.append(product(("layer", layer)).sum((1, 2)))  # (B,)
    return tuple(torch.stack(x, 1).cpu() for x in (heads, mlps, layers))  # type: ignore[return-value]


def _midpoints(steps: int) -> list[float]:
    return [(k + 0.5) / steps for k in range(steps)]


def attribute(
    base: LoadedModel,
    ft: LoadedModel,
    encoded: Prepared,
    *,
    batch_size: int,
    method: Method = "atp",
    steps: int = 8,
) -> Attribution:
    """Estimated sufficiency and necessity of every head, MLP and layer node, per document."""
    method = method_name(method)
    if method not in METHODS:
        raise SumcircuitError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if steps < 1:
        raise SumcircuitError(f"--ig-steps must be at least 1, got {steps}")
    arch, sites = base.arch, all_sites(base.arch)
    n, L, H = len(encoded), arch.n_layers, arch.n_heads
    heads_suff, mlps_suff, layers_suff = np.zeros((n, L, H)), np.zeros((n, L)), np.zeros((n, L))
    heads_nec, mlps_nec = np.full((n, L, H), np.nan), np.full((n, L), np.nan)
    layers_nec = np.full((n, L), np.nan)
    m_base, m_ft = np.full(n, np.nan), np.full(n, np.nan)
    mixed = _interpolation(base, ft) if method == "ig-weights" else None
    batches = list(iter_batches(encoded.encoded, batch_size, base.tokenizer.pad_token_id))
    per_batch = 2 if method == "atp" else 2 + steps
    n_passes = 0
    for idx, batch in tqdm(batches, desc=f"attribution ({method})", unit="batch"):
        mask = batch.attention_mask.bool().to(base.device)
        if method == "atp":
            mb, base_acts, base_grads = site_gradients(base.model, arch, batch, sites)
            mf, ft_acts, ft_grads = site_gradients(ft.model, arch, batch, sites)
            diff = {s: ft_acts[s] - base_acts[s] for s in sites}
            hs, ms, ls = _contributions(arch, diff, base_grads, mask)
            hn, mn, ln = _contributions(arch, diff, ft_grads, mask)
        else:
            with capturing(base.model, arch, sites) as base_acts:
                mb = score(base.model, arch, batch)
            with capturing(ft.model, arch, sites) as ft_acts:
                mf = score(ft.model, arch, batch)
            diff = {s: ft_acts[s] - base_acts[s] for s in sites}
            total = {s: torch.zeros_like(diff[s]) for s in sites}
            for alpha in _midpoints(steps):
                if mixed is None:
                    # heads and MLPs held; a layer's write is their sum, so it stays free
                    point = {s: base_acts[s] + alpha * diff[s] for s in sites if s[0] != "layer"}
                    _, _, grads = site_gradients(base.model, arch, batch, sites, values=point)
                else:
                    _, _, grads = site_gradients(mixed(alpha), arch, batch, sites)
                for s in sites:
                    total[s] += grads[s] / steps
            hs, ms, ls = _contributions(arch, diff, total, mask)
            hn, mn, ln = hs, ms, ls  # one path integral, read from either end
        heads_nec[idx], mlps_nec[idx], layers_nec[idx] = hn.numpy(), mn.numpy(), ln.numpy()
        heads_suff[idx], mlps_suff[idx], layers_suff[idx] = hs.numpy(), ms.numpy(), ls.numpy()
        m_base[idx], m_ft[idx] = mb.numpy(), mf.numpy()
        n_passes += per_batch
    return Attribution(
        method=method,
        heads_suff=heads_suff,
        mlps_suff=mlps_suff,
        layers_suff=layers_suff,
        heads_nec=heads_nec,
        mlps_nec=mlps_nec,
        layers_nec=layers_nec,
        m_base=m_base,
        m_ft=m_ft,
        n_passes=n_passes,
    )


def _interpolation(base: LoadedModel, ft: LoadedModel):
    """``mixed(α)``: one scratch copy of the base model with weights θ_base + α (θ_ft − θ_base)."""
    scratch = copy.deepcopy(base.model)
    pairs = [
        (p, base_p, ft_p)
        for (p, base_p, ft_p) in zip(
            scratch.parameters(), base.model.parameters(), ft.model.parameters(), strict=True
        )
        if not torch.equal(base_p, ft_p)
    ]

    @torch.no_grad()
    def mixed(alpha: float) -> nn.Module:
        for p, base_p, ft_p in pairs:
            torch.lerp(base_p, ft_p, alpha, out=p.data)
        return scratch

    return mixed
