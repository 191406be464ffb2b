"""Activation patching: capture and replace per-head attention outputs, MLP writes and layer writes.

Three kinds of *sites* per layer ``l`` (names from the architecture table, no architecture ``if``):

- ``("attn", l)``: the input of the attention output projection (``Arch.proj_name(l, "o")``),
  ``[head_0 | head_1 | ...]``, each ``head_dim`` wide, shape ``(B, T, n_heads * head_dim)`` —
  read and replaced by a forward-pre hook. A *head* node is its slice of this input: the output
  projection (and any post-attention norm, which mixes the heads) is *not* patched with it, so
  a change of ``W_O`` between the two models stays with the target model.
- ``("mlp", l)``: the MLP's write to the residual stream, ``(B, T, hidden)``: the output of
  ``Arch.mlp_out_name(l)`` — the MLP module, or the norm after it where the architecture has
  one (Gemma3's post-feedforward norm) — read and replaced by a forward hook.
- ``("layer", l)``: the decoder block's write to the residual stream,
  ``delta_l = block output − block input`` ``(B, T, hidden)``, read by a forward hook on the
  block (``Arch.block_name(l)``) and replaced by setting ``block output := block input + delta``
  — the block's input is the target model's own, live. For a pre-norm block this is
  attention output (after ``W_O`` and any post-norm) + MLP write, so it carries every weight of
  the block: patching every layer node reproduces the source model (to rounding) when the two
  differ only inside their blocks (not in the embeddings, final norm or LM head).

A component is one head's slice of an ``attn`` site, one MLP write, or one layer write
(:meth:`Components.from_layers`). Exact patching and attribution use these same nodes at each
level.

Patch sources (:data:`Source`): another model's activations on the same batch (``(B, T, D)``
per site, from :func:`capturing`), a dataset mean (``(D,)`` per site, broadcast to every
position, from :func:`dataset_means`), or zero (:func:`zero_source`; for a layer: the block
writes nothing). Patches apply at every position of the sequence.

The metric (:func:`summary_loglik`): m = mean over a document's summary tokens of
``log p(label)`` under teacher forcing, with logits computed only at the positions that predict a
summary token (a forward-pre hook on the LM head keeps only those rows).

A patched forward starts at its set's lowest patched layer, from the residual stream the clean
forward of the same model left there: the blocks below are skipped, not recomputed
(:mod:`sumcircuit.analysis.causal.resume`), and a patched layer node's own block does not run
either (its output is its input plus the patched write); :attr:`Effects.n_layer_forwards_skipped`
counts both.

The module is about 500 lines because sites, hooks, sources, the sweep and the config of
the pair they run on are one idea that validate, scan and attribution all build on; split, each
piece would import all the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sumcircuit.analysis.causal.resume import Written, recording_residuals, resuming, standing_in
from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.configs import check_at_least
from sumcircuit.data.batching import Prepared, iter_batches, prepare_for
from sumcircuit.data.options import SplitDataOptions
from sumcircuit.data.prompting import Batch
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.models.archs import Arch
from sumcircuit.models.hooks import hooks
from sumcircuit.models.loader import LoadedModel
from sumcircuit.models.pair import DTYPES, load_pair
from sumcircuit.provenance import provenance

log = logging.getLogger(__name__)

Site = tuple[Literal["attn", "mlp", "layer"], int]
#: Per site: ``(B, T, D)`` activations of the same batch, or a ``(D,)`` vector for every position.
Source = Mapping[Site, torch.Tensor]
Ablation = Literal["patch", "mean", "zero"]
ABLATIONS: tuple[str, ...] = ("patch", "mean", "zero")


# -- component sets --------------------------------------------------------------------------
@dataclass(frozen=True)
class Components:
    """A set of patchable components: attention heads ``(layer, head)``, MLP writes and whole
    layers' writes (a layer holds its heads and MLP, so a set names a layer or its parts)."""

    heads: frozenset[tuple[int, int]] = frozenset()
    mlps: frozenset[int] = frozenset()
    layers: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        inside = sorted(self.layers & ({layer for layer, _ in self.heads} | self.mlps))
        if inside:
            raise SumcircuitError(
                f"layer(s) {inside} are patched whole and in parts; a layer node already "
                "holds its heads and MLP, so name either the layer or its parts"
            )

    @classmethod
    def from_layers(cls, arch: Arch, layers: list[int] | tuple[int, ...] | range) -> Components:
        """Whole layers: each layer's write to the residual stream (its layer node)."""
        for layer in layers:
            arch.check_layer(layer)
        return cls(layers=frozenset(int(layer) for layer in layers))

    @classmethod
    def from_heads(cls, arch: Arch, heads: list[tuple[int, int]]) -> Components:
        """Attention heads only (no MLP)."""
        for layer, head in heads:
            arch.check_layer(layer)
            arch.check_head(head)
        return cls(heads=frozenset((int(layer), int(head)) for layer, head in heads))

    @classmethod
    def from_circuit(cls, circuit: Circuit, arch: Arch) -> Components:
        """A layer circuit's layer nodes, or a head circuit's heads."""
        if circuit.level == "layer":
            return cls.from_layers(arch, circuit.layers)
        return cls.from_heads(arch, circuit.heads)

    def sites(self) -> list[Site]:
        """The sites this set touches, sorted."""
        attn: list[Site] = [("attn", layer) for layer in sorted({lay for lay, _ in self.heads})]
        mlp: list[Site] = [("mlp", layer) for layer in sorted(self.mlps)]
        return attn + mlp + [("layer", layer) for layer in sorted(self.layers)]

    def nodes(self) -> frozenset[tuple[int, str, int]]:
        """Every node as ``(layer, kind, head)`` (head -1 for an MLP or a whole layer)."""
        return frozenset(
            {(layer, "head", head) for layer, head in self.heads}
            | {(layer, "mlp", -1) for layer in self.mlps}
            | {(layer, "layer", -1) for layer in self.layers}
        )

    def heads_of(self, layer: int) -> list[int]:
        return sorted(h for lay, h in self.heads if lay == layer)

    def describe(self) -> dict[str, Any]:
        return {
            "heads": sorted(list(h) for h in self.heads),
            "mlps": sorted(self.mlps),
            "layers": sorted(self.layers),
        }


SITE_KINDS: tuple[str, ...] = ("attn", "mlp", "layer")


def all_sites(arch: Arch) -> list[Site]:
    """Every site of every layer: heads' o_proj input, MLP write, layer write."""
    return [(kind, layer) for layer in range(arch.n_layers) for kind in SITE_KINDS]


# -- pure tensor functions -------------------------------------------------------------------
def head_columns(heads: list[int], n_heads: int, head_dim: int) -> torch.Tensor:
    """Bool mask ``(n_heads * head_dim,)`` of the columns of ``heads`` in ``[head_0 | head_1 | ...]``."""
    mask = torch.zeros(n_heads, head_dim, dtype=torch.bool)
    mask[heads] = True
    return mask.reshape(-1)


def patch_columns(x: torch.Tensor, source: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``x`` (…, D) with the ``columns`` (D,) bool taken from ``source`` ((…, D) or (D,)).

    Values are copied exactly (``torch.where``), never recomputed.
    """
    if source.shape[-1] != x.shape[-1]:
        raise SumcircuitError(
            f"patch source has width {source.shape[-1]}, the patched activation {x.shape[-1]}; "
            "the two models must have the same architecture"
        )
    source = source.to(dtype=x.dtype, device=x.device)
    return torch.where(columns.to(x.device), source.expand_as(x), x)


def summary_loglik(
    logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor, n_rows: int
) -> torch.Tensor:
    """Per-document mean log-likelihood of the summary tokens, ``(n_rows,)`` float64.

    logits: (N, V) at the N positions that predict a summary token; labels: (N,) the tokens;
    rows: (N,) the document (batch row) of each position. m_b = mean over {i: rows_i = b} of
    ``log_softmax(logits_i)[labels_i]``; a document with no summary token gets NaN.
    """
    # at least float32 (bf16 logits are upcast; float64 models keep their precision)
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    token = logp.gather(-1, labels[:, None]).squeeze(-1).double()  # (N,)
    sums = torch.zeros(n_rows, dtype=torch.float64, device=token.device)
    counts = torch.zeros(n_rows, dtype=torch.float64, device=token.device)
    sums.index_add_(0, rows, token)
    counts.index_add_(0, rows, torch.ones_like(token))
    return sums / counts


# -- hooks -------------------------------------------------------------------------------------
def _site_name(arch: Arch, site: Site) -> str:
    kind, layer = site
    if kind == "attn":
        return arch.proj_name(layer, "o")
    return arch.mlp_out_name(layer) if kind == "mlp" else arch.block_name(layer)


def hook_tables(arch: Arch, fns: Mapping[Site, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split per-site functions ``f(tensor) -> tensor | None`` into hooks' forward/pre tables.

    ``f`` sees the site's activation (for a layer: the block's write, output − input) and may
    return a replacement (for a layer: the new write, added to the block's own input).
    """
    forward: dict[str, Any] = {}
    pre: dict[str, Any] = {}
    for site, fn in fns.items():
        name = _site_name(arch, site)
        if site[0] == "attn":
            pre[name] = _pre_hook(fn)
        elif site[0] == "layer":
            forward[name] = _write_hook(fn, name)
        else:
            forward[name] = _forward_hook(fn)
    return forward, pre


def _pre_hook(fn):
    def hook(module: nn.Module, args: tuple) -> tuple | None:
        new = fn(args[0])
        return None if new is None else (new, *args[1:])

    return hook


def _forward_hook(fn):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        return fn(output)

    return hook


def _write_hook(fn, name: str):
    """A decoder block's write: ``fn(output − input)``; a returned write ``w`` makes the block
    return ``input + w``."""

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not args or not torch.is_tensor(args[0]) or not torch.is_tensor(output):
            raise SumcircuitError(
                f"decoder block {name} must take the hidden states as its first positional "
                "argument and return a tensor to patch its write to the residual stream "
                "(transformers 5 decoders do)"
            )
        hidden = args[0]
        new = fn(output - hidden)
        return None if new is None else hidden + new

    return hook


@contextmanager
def capturing(
    model: nn.Module, arch: Arch, sites: list[Site]
) -> Iterator[dict[Site, torch.Tensor]]:
    """Record the activation at each site during forwards inside the block (last forward wins)."""
    store: dict[Site, torch.Tensor] = {}

    def recorder(site: Site):
        def record(x: torch.Tensor) -> None:
            store[site] = x.detach()

        return record

    forward, pre = hook_tables(arch, {site: recorder(site) for site in sites})
    with hooks(model, forward=forward, pre=pre):
        yield store


@contextmanager
def patching(
    model: nn.Module, arch: Arch, components: Components, source: Source
) -> Iterator[None]:
    """Replace ``components``' activations by ``source``'s during forwards inside the block.

    A whole layer's block does not run: it stands in as its input plus the source's write
    (:class:`~sumcircuit.analysis.causal.resume.Written`) — what running it and replacing its
    write gives, bit for bit, without the block's compute. Heads and MLPs are replaced by hooks.
    """
    fns: dict[Site, Any] = {}
    written: dict[int, Written] = {}
    for site in components.sites():
        if site not in source:
            raise SumcircuitError(f"patch source lacks site {site}; capture it first")
        kind, layer = site
        if kind == "layer":
            written[layer] = Written(source[site], layer)
            continue
        width = source[site].shape[-1]
        if kind == "attn":
            columns = head_columns(components.heads_of(layer), arch.n_heads, arch.head_dim)
        else:
            columns = torch.ones(width, dtype=torch.bool)
        fns[site] = _replacer(source[site], columns)
    forward, pre = hook_tables(arch, fns)
    with hooks(model, forward=forward, pre=pre), standing_in(model, arch, written):
        yield


def _replacer(source: torch.Tensor, columns: torch.Tensor):
    def replace(x: torch.Tensor) -> torch.Tensor:
        return patch_columns(x, source, columns)

    return replace


@torch.no_grad()
def score(model: nn.Module, arch: Arch, batch: Batch) -> torch.Tensor:
    """m per document of ``batch``, ``(B,)`` float64 on the CPU (see :func:`summary_loglik`)."""
    return loglik(model, arch, batch).cpu()


def loglik(model: nn.Module, arch: Arch, batch: Batch) -> torch.Tensor:
    """m per document of ``batch``, ``(B,)`` float64 on the model's device, differentiable.

    The LM head sees only the hidden states of summary-predicting positions.
    """
    device = next(model.parameters()).device
    mask = batch.summary_mask.to(device)  # (B, T)
    rows = mask.nonzero()[:, 0]  # (N,)
    labels = batch.labels.to(device)[mask]  # (N,)

    def keep_summary_positions(module: nn.Module, args: tuple) -> tuple:
        return (args[0][mask], *args[1:])  # (B, T, D) -> (N, D)

    with hooks(model, pre={arch.spec.lm_head: keep_summary_positions}):
        logits = model(
            input_ids=batch.input_ids.to(device),
            attention_mask=batch.attention_mask.to(device),
            use_cache=False,
        ).logits  # (N, V)
    return summary_loglik(logits, labels, rows, mask.shape[0])


def zero_source(arch: Arch, sites: list[Site]) -> dict[Site, torch.Tensor]:
    """Zero vectors for ``sites``."""
    width = {"attn": arch.n_heads * arch.head_dim, "mlp": arch.hidden, "layer": arch.hidden}
    return {site: torch.zeros(width[site[0]]) for site in sites}


@torch.no_grad()
def dataset_means(
    loaded: LoadedModel,
    encoded: Prepared,
    sites: list[Site],
    *,
    batch_size: int,
    region: str = "all",
) -> dict[Site, torch.Tensor]:
    """Mean activation per site over the ``region`` tokens of every document (position-independent).

    mean_s = Σ_{docs, t ∈ region} a_s[t] / #region tokens, accumulated in float64.
    """
    sums: dict[Site, torch.Tensor] = {}
    count = 0
    pad_id = loaded.tokenizer.pad_token_id
    batches = iter_batches(encoded.encoded, batch_size, pad_id)
    for _, batch in tqdm(list(batches), desc="dataset mean", leave=False):
        mask = batch.region(region).to(loaded.device)
        with capturing(loaded.model, loaded.arch, sites) as store:
            loaded.model(
                input_ids=batch.input_ids.to(loaded.device),
                attention_mask=batch.attention_mask.to(loaded.device),
                use_cache=False,
            )
        for site in sites:
            total = store[site][mask].double().sum(0)  # (D,)
            sums[site] = sums[site] + total if site in sums else total
        count += int(mask.sum())
    if count == 0:
        raise SumcircuitError(f"no {region!r} tokens to average over; choose another region")
    return {site: (total / count).float() for site, total in sums.items()}


# -- the sweep ---------------------------------------------------------------------------------
@dataclass
class Effects:
    """Per-document metrics of one sweep over component sets (documents in ``Prepared`` order).

    m_base, m_ft: (n_docs,) unpatched; m_suff: (n_docs, n_sets) base with each set patched in
    from the fine-tuned model; m_nec: (n_docs, n_sets) fine-tuned with each set patched from the
    base model / mean / zero, or None when necessity was not asked for. n_forwards: model
    forwards run (clean, patched and the dataset-mean pass); n_layer_forwards_skipped: decoder-block
    forwards the patched runs skipped, by resuming at their lowest patched layer or a stream an
    earlier set shares, and by standing a patched layer node's block in as input + write (a full
    recomputation would run ``n_forwards * n_layers`` blocks).
    """

    m_base: np.ndarray
    m_ft: np.ndarray
    m_suff: np.ndarray
    m_nec: np.ndarray | None = None
    n_forwards: int = 0
    n_layer_forwards_skipped: int = 0


def patch_effects(
    base: LoadedModel,
    ft: LoadedModel,
    encoded: Prepared,
    sets: list[Components],
    *,
    batch_size: int,
    necessity: bool = True,
    ablation: Ablation = "patch",
    mean_region: str = "all",
) -> Effects:
    """Sufficiency (and necessity) runs of every set in ``sets`` over every document.

    Per batch: one clean forward of each model, capturing the sites any set needs (and giving
    m_base, m_ft) and the residual stream entering each set's lowest patched layer; then one
    forward of the target model per set and direction, reusing the captures and resuming from
    the target model's own clean residual at the set's lowest patched layer (the blocks below are
    skipped, not computed: :mod:`sumcircuit.analysis.causal.resume`) — or, where an earlier set
    patches the same nodes below some higher layer, from the stream that set's forward left
    there (:func:`shared_prefixes`). Memory per batch: the captured sites plus one ``(B, T, D)``
    residual per model and distinct lowest layer, and per shared stream until its last use.
    """
    if ablation not in ABLATIONS:
        raise SumcircuitError(f"unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}")
    sites = sorted({site for comps in sets for site in comps.sites()}, key=lambda s: (s[1], s[0]))
    starts = [resume_layer(base.arch, comps) for comps in sets]
    n, n_sets = len(encoded), len(sets)
    m_base, m_ft = np.full(n, np.nan), np.full(n, np.nan)
    m_suff = np.full((n, n_sets), np.nan)
    m_nec = np.full((n, n_sets), np.nan) if necessity else None
    fixed: dict[Site, torch.Tensor] | None = None
    n_forwards = 0
    if necessity and ablation == "mean":
        fixed = dataset_means(ft, encoded, sites, batch_size=batch_size, region=mean_region)
        n_forwards += -(-n // batch_size)
    elif necessity and ablation == "zero":
        fixed = zero_source(ft.arch, sites)
    batches = list(iter_batches(encoded.encoded, batch_size, base.tokenizer.pad_token_id))
    per_batch = 2 + n_sets * (2 if necessity else 1)
    plan = shared_prefixes(base.arch, sets)
    bar = tqdm(total=len(batches) * per_batch, desc="patching", unit="fwd")
    for idx, batch in batches:
        with (
            capturing(base.model, base.arch, sites) as base_acts,
            recording_residuals(base.model, base.arch, starts) as base_res,
        ):
            m_base[idx] = score(base.model, base.arch, batch).numpy()
        with (
            capturing(ft.model, ft.arch, sites) as ft_acts,
            recording_residuals(ft.model, ft.arch, starts) as ft_res,
        ):
            m_ft[idx] = score(ft.model, ft.arch, batch).numpy()
        bar.update(2)
        runs = [(base, ft_acts, base_res, m_suff)]
        if m_nec is not None:
            runs.append((ft, fixed or base_acts, ft_res, m_nec))
        for target, source, clean, out in runs:
            for j, scored in _patched_scores(target, sets, plan, source, clean, batch):
                out[idx, j] = scored
                bar.update(1)
        del base_acts, ft_acts, base_res, ft_res
    bar.close()
    n_forwards += len(batches) * per_batch
    # below where each set starts nothing runs; a patched layer's block above it stands in as
    # input + write
    n_skipped = len(batches) * sum(
        start + sum(layer >= start for layer in comps.layers)
        for comps, (start, _) in zip(sets, plan, strict=True)
    )
    n_skipped *= 2 if necessity else 1
    return Effects(
        m_base=m_base,
        m_ft=m_ft,
        m_suff=m_suff,
        m_nec=m_nec,
        n_forwards=n_forwards,
        n_layer_forwards_skipped=n_skipped,
    )


def shared_prefixes(arch: Arch, sets: list[Components]) -> list[tuple[int, int | None]]:
    """Where each set's patched forward starts, and from whose residual stream: ``(l, None)``,
    its lowest patched layer, from the clean forward's; ``(l, k)``, from the stream an earlier
    set ``k``'s patched forward left entering block ``l``.

    Below the lowest layer at which two sets' nodes differ, both patch the same nodes from the
    same source into the same model, so the stream entering that layer is the same bit for bit;
    the later set starts there, from the earlier one's, whichever earlier set reaches highest.
    Ties go to the first such set, which itself starts below that layer (else a still earlier
    set would reach as high), so the stream is recorded from a block that ran or stood in as
    input + write, never from one that replays a start below it.
    """
    nodes = [comps.nodes() for comps in sets]
    plan: list[tuple[int, int | None]] = []
    for j, own in enumerate(nodes):
        best: tuple[int, int | None] = (resume_layer(arch, sets[j]), None)
        for k in range(j):
            layer = min((node[0] for node in own ^ nodes[k]), default=arch.n_layers)
            if layer > best[0]:
                best = (layer, k)
        plan.append(best)
    return plan


def _patched_scores(
    target: LoadedModel,
    sets: list[Components],
    plan: list[tuple[int, int | None]],
    source: Source,
    clean: Mapping[int, torch.Tensor],
    batch: Batch,
) -> Iterator[tuple[int, np.ndarray]]:
    """``(j, m per document)`` of ``target`` with each set ``j`` patched from ``source``, each
    forward started as ``plan`` says (:func:`shared_prefixes`); the streams later sets start
    from are recorded on the way and dropped after their last use."""
    model, arch = target.model, target.arch
    wanted: dict[int, set[int]] = {}
    last_use: dict[int, int] = {}
    for j, (layer, k) in enumerate(plan):
        if k is not None:
            wanted.setdefault(k, set()).add(layer)
            last_use[k] = j
    if any(layer <= plan[j][0] for j, layers in wanted.items() for layer in layers):
        # a block below where set j starts only replays the stream entering that start
        raise SumcircuitError("internal: a shared stream would be recorded below its set's start")
    left: dict[int, dict[int, torch.Tensor]] = {}
    for j, comps in enumerate(sets):
        layer, k = plan[j]
        with (
            patching(model, arch, comps, source),
            resuming(model, arch, layer, clean if k is None else left[k]),
            recording_residuals(model, arch, wanted.get(j, ())) as stream,
        ):
            scored = score(model, arch, batch).numpy()
        if j in wanted:
            left[j] = stream
        for done in [i for i in left if last_use[i] == j]:
            del left[done]
        yield j, scored


def resume_layer(arch: Arch, components: Components) -> int:
    """Where a patched forward of ``components`` starts: its lowest patched layer
    (``arch.n_layers`` for the empty set, which patches nothing)."""
    return min((layer for _, layer in components.sites()), default=arch.n_layers)


# -- a model pair and its data -----------------------------------------------------------------
@dataclass
class PairConfig(SplitDataOptions):
    """What every stage that compares a base model with its fine-tune reads: the two models and
    the documents (:class:`~sumcircuit.data.options.SplitDataOptions`)."""

    base: str = field(
        default="smollm2-135m",
        metadata={"help": "base model: preset, dir or HF id (its tokenizer encodes the data)"},
    )
    finetuned: str = field(default="", metadata={"help": "fine-tuned model: dir or HF id"})
    dtype: str = field(
        default="float32", metadata={"help": "model dtype", "choices": tuple(DTYPES)}
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: auto)"})
    seed: int = field(default=0, metadata={"help": "seed of controls and bootstrap"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples for CIs"})

    def __post_init__(self) -> None:
        super().__post_init__()  # types, choices and the data options
        if not self.finetuned:
            raise ConfigError("finetuned", "{key} is required: the fine-tuned model to explain")
        check_at_least(self, ("n_boot",), 100)
        check_at_least(self, ("seed",), 0)


@dataclass
class PatchingConfig(PairConfig):
    """What every patching stage (scan, attribute, faithfulness, validate) reads: the pair, the
    documents, and the smallest fine-tuning effect worth explaining."""

    min_delta: float = field(
        default=1e-6,
        metadata={"help": "|m_ft − m_base| below this means there is nothing to explain"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least(self, ("min_delta",), 0)


@dataclass
class Pair:
    base: LoadedModel
    ft: LoadedModel
    prepared: Prepared


def prepare_pair(config: PairConfig, *, stage: str = "patching") -> Pair:
    """Load both models (:func:`sumcircuit.models.pair.load_pair`: checked to be a model and its
    own, different, fine-tune) and encode the documents once with the base tokenizer."""
    base, ft = load_pair(
        config.base, config.finetuned, dtype=config.dtype, device=config.device, stage=stage
    )
    prepared = prepare_for(config, base.tokenizer)
    return Pair(base=base, ft=ft, prepared=prepared)


def forward_counts(effects: Effects, n_layers: int) -> dict[str, int]:
    """The model forwards of a sweep, the decoder-layer forwards they ran and those they skipped
    (below each set's lowest patched layer, and each patched layer node's own block): what the
    result's ``timing`` records."""
    return {
        "forwards": effects.n_forwards,
        "layer_forwards": effects.n_forwards * n_layers - effects.n_layer_forwards_skipped,
        "layer_forwards_skipped": effects.n_layer_forwards_skipped,
    }


def run_record(
    config: PairConfig, pair: Pair, effects: Effects, *, start: float, loaded: float, swept: float
) -> dict[str, Any]:
    """The ``timing`` and ``provenance`` fields every patching result records."""
    return {
        "timing": {
            "load_s": loaded - start,
            "patching_s": swept - loaded,
            "total_s": time.perf_counter() - start,
            **forward_counts(effects, pair.base.arch.n_layers),
        },
        "provenance": provenance(
            config,
            models={"base": pair.base.identity, "finetuned": pair.ft.identity},
            data=pair.prepared.data_identity | {"encode": pair.prepared.report},
            seed=config.seed,
        ),
    }
