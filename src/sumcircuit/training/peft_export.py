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

``--out`` must be a new or empty folder, or an earlier export (those two files alone): an export
never writes into a trained adapter's or any other result's folder, whose ``adapter_config.json``
it would overwrite.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
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
_FINETUNE = {f.name: f for f in fields(FinetuneConfig)}


def _as_finetune(name: str) -> Any:
    """A field with ``FinetuneConfig``'s default and help for ``name`` (one source for both)."""
    return field(default=_FINETUNE[name].default, metadata=dict(_FINETUNE[name].metadata))


@dataclass
class PeftExportConfig(DictConfig):
    """What to export: the circuit, where, and the LoRA hyper-parameters."""

    circuit: str = field(default="", metadata={"help": "circuit.json or the folder holding it"})
    out: str = field(default="", metadata={"help": "folder to write adapter_config.json into"})
    rank: int = _as_finetune("rank")
    alpha: float | None = _as_finetune("alpha")
    lora_dropout: float = _as_finetune("lora_dropout")
    targets: tuple[str, ...] = _as_finetune("targets")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.circuit:
            raise SumcircuitError("export-peft needs a circuit: pass CIRCUIT (circuit.json)")
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


def circuit_arch(circuit: Circuit) -> Arch:
    """The architecture the circuit was made for, from the model identity it records."""
    model = circuit.model
    model_type = model.get("model_type")
    if model_type not in ARCHS:
        raise SumcircuitError(
            f"the circuit records model type {model_type!r}, not one of {', '.join(sorted(ARCHS))}; "
            "export a circuit made by sumcircuit locate"
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
            "the circuit does not record its model's layers and heads; export a circuit made by "
            "sumcircuit locate"
        ) from None


def circuit_lora_config(circuit: Circuit, config: PeftExportConfig) -> PeftExport:
    """The peft ``LoraConfig`` adapting ``config.targets`` on the circuit's layers."""
    arch = circuit_arch(circuit)
    circuit.check(arch)
    layers = sorted(circuit.layers)
    if not layers:
        raise SumcircuitError("the circuit selects no layer: there is nothing to adapt")
    # Module names relative to a block, from the architecture table (one block's names, prefix cut).
    prefix = f"{arch.block_name(0)}."
    modules = [name.removeprefix(prefix) for name in arch.lora_targets([0], config.targets)]
    notes = []
    if circuit.level == "head":
        notes.append(
            f"the circuit selects heads {[list(h) for h in circuit.heads]}; peft's LoraConfig "
            f"cannot restrict an adapter to heads, so this adapts every head of layers {layers} "
            "(sumcircuit finetune --circuit restricts LoRA to the heads)"
        )
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.lora_dropout,
        target_modules=modules,
        layers_to_transform=layers,
        layers_pattern=arch.spec.blocks.rsplit(".", 1)[-1],
        fan_in_fan_out=arch.spec.weight_in_out,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=circuit.model.get("name"),
    )
    return PeftExport(lora_config=lora, layers=layers, target_modules=modules, notes=notes)


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
    """Write ``config.out/adapter_config.json`` for the circuit (and the export's provenance)."""
    out = Path(config.out)
    check_export_out(out)  # before anything is read or written
    circuit = Circuit.load(config.circuit)
    export = circuit_lora_config(circuit, config)
    out.mkdir(parents=True, exist_ok=True)
    export.lora_config.save_pretrained(str(out))
    write_json(
        out / EXPORT_FILE,
        {
            "circuit": circuit.to_dict(),
            "layers": export.layers,
            "target_modules": export.target_modules,
            "notes": export.notes,
            "provenance": provenance(config.to_dict(), models={"base": circuit.model}),
        },
    )
    return export
