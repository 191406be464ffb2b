"""A circuit as a peft ``LoraConfig`` (``sumcircuit export-peft``): circuit LoRA in anyone's trainer.

:func:`export_peft` writes ``DIR/adapter_config.json`` (``LoraConfig.save_pretrained``), which
``LoraConfig.from_pretrained(DIR)`` reads back for ``get_peft_model``:

- ``target_modules``: the architecture table's LoRA modules for ``targets`` (``q, k, v, o,
  mlp``), named relative to a decoder block (``self_attn.q_proj``; GPT-2's fused
  ``attn.c_attn``), so they only match inside blocks;
- ``layers_to_transform``: the circuit's layers; ``layers_pattern``: the name of the block list
  (``layers``, GPT-2's ``h``), from which peft reads a module's layer index;
- ``r``, ``lora_alpha``, ``lora_dropout``: the flags, defaulting to ``sumcircuit finetune``'s.

A head circuit exports the layers of its heads: peft's ``LoraConfig`` adapts whole modules and
cannot restrict an adapter to some heads (``sumcircuit finetune --circuit`` can: it masks the
LoRA factors, see :mod:`sumcircuit.training.adapters`). The export says so in its ``notes``.
Beside the adapter config, ``sumcircuit-export.json`` records the circuit and provenance.

Two other placements export the same way, instead of a circuit:

- ``--placement DIR --k K [--locator NAME]``: the top-K layers of a locator on a placement curve
  (``sumcircuit placement``; ``--locator best``, the default, takes the one that closed the most
  gap at K), at ``--rank``;
- ``--run DIR``: what a LoRA training run adapted (``sumcircuit finetune`` or a study arm such as
  ``lora/targeted-adapt-s0`` or ``lora/circuit-rank-s0``), with that run's rank, alpha and
  targets; per-layer ranks become ``rank_pattern`` and ``alpha_pattern``, keyed by the module
  name from the block list on (``layers.2.self_attn.q_proj``).

``--out`` must be a new or empty folder, or an earlier export (those two files alone): an export
never writes into a trained adapter's or any other result's folder, whose ``adapter_config.json``
it would overwrite.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from peft import LoraConfig

from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.configs import DictConfig
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import write_json
from sumcircuit.models.archs import ARCHS, Arch
from sumcircuit.provenance import provenance
from sumcircuit.training.config import FinetuneConfig

EXPORT_FILE = "sumcircuit-export.json"
BEST = "best"
_FINETUNE = {f.name: f for f in fields(FinetuneConfig)}


def _as_finetune(name: str) -> Any:
    """A field with ``FinetuneConfig``'s default and help for ``name`` (one source for both)."""
    return field(default=_FINETUNE[name].default, metadata=dict(_FINETUNE[name].metadata))


@dataclass
class PeftExportConfig(DictConfig):
    """What to export: the circuit, where, and the LoRA hyper-parameters."""

    circuit: str = field(default="", metadata={"help": "circuit.json or the folder holding it"})
    out: str = field(default="", metadata={"help": "folder to write adapter_config.json into"})
    placement: str | None = field(
        default=None,
        metadata={"help": "instead of a circuit: a placement curve (placement.json or its folder)"},
    )
    locator: str = field(
        default=BEST,
        metadata={
            "help": "with --placement: the locator whose top-k layers to export (best: the "
            "one that closed the most gap at --k)"
        },
    )
    k: int | None = field(default=None, metadata={"help": "with --placement: how many layers"})
    run: str | None = field(
        default=None,
        metadata={
            "help": "instead of a circuit: a LoRA training run's folder (its layers, "
            "per-layer ranks, rank, alpha and targets)"
        },
    )
    rank: int = _as_finetune("rank")
    alpha: float | None = _as_finetune("alpha")
    lora_dropout: float = _as_finetune("lora_dropout")
    targets: tuple[str, ...] = _as_finetune("targets")

    def __post_init__(self) -> None:
        super().__post_init__()
        given = [name for name in ("circuit", "placement", "run") if getattr(self, name)]
        if len(given) != 1:
            raise SumcircuitError(
                "export-peft exports one placement: pass CIRCUIT (circuit.json), --placement DIR "
                f"--k K, or --run DIR (got {' and '.join(given) or 'none'})"
            )
        if self.placement and self.k is None:
            raise SumcircuitError("--placement needs --k: how many layers to export")
        if self.k is not None and not self.placement:
            raise SumcircuitError("--k and --locator choose layers of a --placement curve")
        if not self.out:
            raise SumcircuitError("export-peft needs --out DIR: a new or empty folder")
        # The same checks and alpha default as sumcircuit finetune.
        lora = FinetuneConfig(
            rank=self.rank, alpha=self.alpha, lora_dropout=self.lora_dropout, targets=self.targets
        )
        self.alpha, self.targets = lora.alpha, lora.targets


@dataclass
class PeftExport:
    """The exported config, the layers and module names it adapts, and what it could not keep."""

    lora_config: LoraConfig
    layers: list[int]
    target_modules: list[str]
    notes: list[str]
    layer_ranks: dict[int, int] = field(default_factory=dict)  # per-layer ranks, if any
    model: dict[str, Any] = field(default_factory=dict)  # the base model's recorded identity


def circuit_arch(circuit: Circuit) -> Arch:
    """The architecture the circuit was made for, from the model identity it records."""
    return identity_arch(circuit.model, "the circuit", "a circuit made by sumcircuit locate")


def identity_arch(model: dict[str, Any], what: str, made_by: str) -> Arch:
    """The architecture a recorded model identity describes (``what`` recorded it; ``made_by``:
    what to export instead when it does not)."""
    model_type = model.get("model_type")
    if model_type not in ARCHS:
        raise SumcircuitError(
            f"{what} records model type {model_type!r}, not one of {', '.join(sorted(ARCHS))}; "
            f"export {made_by}"
        )
    try:
        return Arch(
            spec=ARCHS[model_type],
            n_layers=int(model["layers"]),
            n_heads=int(model["heads"]),
            n_kv_heads=int(model.get("kv_heads") or model["heads"]),
            head_dim=int(model.get("head_dim") or 0),
            hidden=int(model.get("hidden") or 0),
        )
    except (KeyError, TypeError, ValueError):
        raise SumcircuitError(
            f"{what} does not record its model's layers and heads; export {made_by}"
        ) from None


def circuit_lora_config(circuit: Circuit, config: PeftExportConfig) -> PeftExport:
    """The peft ``LoraConfig`` adapting ``config.targets`` on the circuit's layers."""
    arch = circuit_arch(circuit)
    circuit.check(arch)
    layers = sorted(circuit.layers)
    if not layers:
        raise SumcircuitError("the circuit selects no layer: there is nothing to adapt")
    notes = []
    if circuit.level == "head":
        notes.append(
            f"the circuit selects heads {[list(h) for h in circuit.heads]}; peft's LoraConfig "
            f"cannot restrict an adapter to heads, so this adapts every head of layers {layers} "
            "(sumcircuit finetune --circuit restricts LoRA to the heads)"
        )
    return layers_lora_config(arch, circuit.model, layers, config, notes=notes)


def layers_lora_config(
    arch: Arch,
    model: dict[str, Any],
    layers: list[int],
    config: PeftExportConfig,
    *,
    layer_ranks: dict[int, int] | None = None,
    notes: list[str] | None = None,
) -> PeftExport:
    """The peft ``LoraConfig`` adapting ``config.targets`` on ``layers`` of ``model`` (a recorded
    identity), at ``config.rank`` — or per layer at ``layer_ranks``, alpha/rank kept fixed."""
    for layer in layers:
        arch.check_layer(layer)
    # Module names relative to a block, from the architecture table (one block's names, prefix cut).
    prefix = f"{arch.block_name(0)}."
    modules = [name.removeprefix(prefix) for name in arch.lora_targets([0], config.targets)]
    blocks = arch.spec.blocks.rsplit(".", 1)[-1]
    ranks, alphas = {}, {}
    for layer, r in (layer_ranks or {}).items():
        for module in modules:  # from the block list on: layers.2.self_attn.q_proj
            key = f"{blocks}.{layer}.{module}"
            ranks[key], alphas[key] = r, config.alpha * r / config.rank
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.lora_dropout,
        target_modules=modules,
        layers_to_transform=sorted(layers),
        layers_pattern=blocks,
        fan_in_fan_out=arch.spec.weight_in_out,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=model.get("name"),
        rank_pattern=ranks,
        alpha_pattern=alphas,
    )
    return PeftExport(
        lora_config=lora,
        layers=sorted(layers),
        target_modules=modules,
        notes=list(notes or []),
        layer_ranks=dict(layer_ranks or {}),
        model=dict(model),
    )


def placement_lora_config(config: PeftExportConfig) -> tuple[PeftExport, dict[str, Any]]:
    """The top-``k`` layers of ``locator`` on the placement curve (``best``: the one that closed
    the most gap at ``k``), and what was exported, for the record."""
    from sumcircuit.analysis.placement.result import PlacementResult

    result = PlacementResult.load(config.placement)
    row = (
        result.best_at(config.k) if config.locator == BEST else result.row(config.locator, config.k)
    )
    arch = identity_arch(
        result.model, "the placement curve", "a curve made by sumcircuit placement"
    )
    notes = [
        f"the top {config.k} layers of locator {row['locator']} on the placement curve (gap "
        f"closed {row['gap_closed']:+.2f}, percentile {row['percentile']:.0f} among random sets)"
    ]
    export = layers_lora_config(arch, result.model, row["layers"], config, notes=notes)
    source = {"placement": str(config.placement), "locator": row["locator"], "k": config.k}
    return export, {"source": source, "row": row}


def run_lora_config(config: PeftExportConfig) -> tuple[PeftExport, dict[str, Any]]:
    """What a LoRA training run adapted, with its own rank, alpha, dropout and targets."""
    from sumcircuit.models.trained import TrainingResult

    trained = TrainingResult.load(config.run)
    run = trained.config
    if run.get("method") != "lora":
        raise SumcircuitError(
            f"{config.run!r} is a full fine-tune, not a LoRA run: it has no adapter placement"
        )
    model = trained.provenance.get("models", {}).get("base") or {}
    arch = identity_arch(model, f"the run {config.run!r}", "a run made by sumcircuit finetune")
    heads = run.get("heads")
    layers = run.get("layers")
    if heads:
        layers = sorted({layer for layer, _ in heads})
    if layers is None:
        layers = list(range(arch.n_layers))
    config = replace(
        config,
        rank=trained.rank or run["rank"],
        alpha=run["alpha"] * (trained.rank or run["rank"]) / run["rank"],
        lora_dropout=run["lora_dropout"],
        targets=tuple(run["targets"]),
    )
    notes = [f"the layers, rank r={config.rank} and targets of the run in {config.run!r}"]
    if heads:
        notes.append(
            f"the run adapted heads {heads}; peft's LoraConfig cannot restrict an adapter to "
            f"heads, so this adapts every head of layers {layers}"
        )
    ranks = {int(k): int(v) for k, v in (run.get("layer_ranks") or {}).items()}
    export = layers_lora_config(arch, model, layers, config, layer_ranks=ranks, notes=notes)
    return export, {"source": {"run": str(config.run)}, "config": config.to_dict()}


#: What an export writes; a folder holding these alone is an earlier export, written again.
EXPORT_FILES = frozenset({"adapter_config.json", EXPORT_FILE})


def check_export_out(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder holding anything but an earlier export (a
    trained adapter, a result, anyone's files)."""
    if out.exists() and not out.is_dir():
        raise SumcircuitError(f"--out {str(out)!r} is a file; give a new or empty folder")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not held or (EXPORT_FILE in held and set(held) <= EXPORT_FILES):
        return
    what = "a LoRA adapter" if "adapter_config.json" in held else "other files"
    raise SumcircuitError(
        f"--out {str(out)!r} already holds {what} ({', '.join(held[:4])}"
        f"{', ...' if len(held) > 4 else ''}), which export-peft would overwrite; give a new or "
        "empty folder"
    )


def export_peft(config: PeftExportConfig) -> PeftExport:
    """Write ``config.out/adapter_config.json`` for the circuit, placement or run (and the
    export's provenance)."""
    out = Path(config.out)
    check_export_out(out)  # before anything is read or written
    if config.placement:
        export, record = placement_lora_config(config)
    elif config.run:
        export, record = run_lora_config(config)
    else:
        circuit = Circuit.load(config.circuit)
        export, record = circuit_lora_config(circuit, config), {"circuit": circuit.to_dict()}
    out.mkdir(parents=True, exist_ok=True)
    export.lora_config.save_pretrained(str(out))
    write_json(
        out / EXPORT_FILE,
        record
        | {
            "layers": export.layers,
            "layer_ranks": {str(k): v for k, v in export.layer_ranks.items()},
            "target_modules": export.target_modules,
            "notes": export.notes,
            "provenance": provenance(config.to_dict(), models={"base": export.model}),
        },
    )
    return export
