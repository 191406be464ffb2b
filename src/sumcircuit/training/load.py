"""Load a trained model: a full fine-tune directory, or a base model with a LoRA adapter."""

from __future__ import annotations

import logging
from pathlib import Path

from peft import PeftModel

from sumcircuit.errors import SumcircuitError
from sumcircuit.models.loader import LoadedModel, load_model
from sumcircuit.training.config import TrainingResult

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
_IDENTITY_KEYS = ("sha256", "model_type", "layers", "heads", "hidden")


def load_trained(
    model_name_or_dir: str, adapter_dir: str | Path | None = None, **load_kwargs: object
) -> LoadedModel:
    """``load_model`` plus an optional LoRA adapter applied (a ``PeftModel`` in ``.model``).

    ``model_name_or_dir`` may itself be a LoRA run directory: its base model is then read from
    its ``training.json``. The adapter's recorded base-model identity must match the loaded
    base model (same weights checksum and shape), else a clear error is raised.
    """
    if adapter_dir is None and (Path(model_name_or_dir) / ADAPTER_CONFIG).exists():
        adapter_dir = model_name_or_dir
        model_name_or_dir = _recorded_base(Path(adapter_dir))["name"]
    loaded = load_model(model_name_or_dir, **load_kwargs)  # type: ignore[arg-type]
    if adapter_dir is None:
        return loaded
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / ADAPTER_CONFIG).exists():
        raise SumcircuitError(
            f"{str(adapter_dir)!r} holds no LoRA adapter ({ADAPTER_CONFIG}); give the --out "
            "directory of a `sumcircuit finetune --method lora` run"
        )
    base = _recorded_base(adapter_dir)
    mismatch = [
        k
        for k in _IDENTITY_KEYS
        if base.get(k) is not None and base.get(k) != loaded.identity.get(k)
    ]
    if mismatch:
        raise SumcircuitError(
            f"the adapter in {str(adapter_dir)!r} was trained on base model {base.get('name')!r}, "
            f"not on {model_name_or_dir!r} (different {', '.join(mismatch)}); load it with its "
            "own base model"
        )
    model = PeftModel.from_pretrained(loaded.model, str(adapter_dir))
    model.eval()
    loaded.identity = dict(loaded.identity, adapter=str(adapter_dir))
    return LoadedModel(
        model=model, tokenizer=loaded.tokenizer, arch=loaded.arch, identity=loaded.identity
    )


def _recorded_base(adapter_dir: Path) -> dict:
    if not TrainingResult.path(adapter_dir).exists():
        raise SumcircuitError(
            f"{str(adapter_dir)!r} has no {TrainingResult.FILE}, so its base model is unknown; "
            "give the base model explicitly and the adapter directory of a sumcircuit finetune run"
        )
    base = TrainingResult.load(adapter_dir).provenance.get("models", {}).get("base")
    if base is None:
        raise SumcircuitError(
            f"{str(TrainingResult.path(adapter_dir))!r} records no base model; "
            f"{TrainingResult.fix(adapter_dir)}"
        )
    return base
