"""The study config: one YAML for the whole pipeline, with presets, CLI overrides and checks.

Precedence: CLI flags > ``--config`` YAML > ``--preset`` > defaults. Each stage section
(``finetune``, ``diff``, ``locate``, ``validate``, ``lora``, ``evaluate``) takes the options of
that stage; unknown keys are refused with the list of valid ones.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from sumcircuit.errors import SumcircuitError, reject_unknown_keys

ARMS = ("standard", "targeted", "random", "anti", "targeted-equal-budget", "heads")

# Options of each section, with defaults. Stage configs validate the values themselves.
SECTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "finetune": {"epochs": 1, "limit": 64, "lr": 3e-5, "batch_size": 4, "grad_accum": 1},
    "diff": {"limit": 100, "region": "summary", "batch_size": 4, "split": "validation"},
    "locate": {"level": "layer", "score": "kl", "rule": "topk", "k": 3, "z": 1.0, "q": 0.05},
    "validate": {"limit": 50, "controls": 20, "ablation": "patch", "batch_size": 4},
    "lora": {
        "arms": ["standard", "targeted", "random"],
        "epochs": 1,
        "limit": 64,
        "rank": 8,
        "lr": 2e-4,
        "batch_size": 4,
        "targets": ["q", "k", "v", "o"],
        "random_draws": 1,
        "rouge_val_limit": 16,
        "heads_per_layer": 3,
    },
    "evaluate": {"limit": 20, "max_new_tokens": 40, "batch_size": 16, "split": "test"},
}

PRESETS: dict[str, dict[str, Any]] = {
    # <= 10 minutes end to end on a 2-core CPU with the default model.
    "quick": {
        "max_length": 256,
        "seeds": [0],
        "finetune": {"limit": 64, "epochs": 1},
        "diff": {"limit": 32},
        "validate": {"limit": 8, "controls": 20},
        "lora": {
            "arms": ["standard", "targeted", "random"],
            "epochs": 1,
            "limit": 48,
            "random_draws": 1,
            "rouge_val_limit": 8,
        },
        "evaluate": {"limit": 20, "batch_size": 20},
    },
    # The paper's scale as far as the data allows; meant for a GPU or a long CPU run.
    "paper": {
        "max_length": 512,
        "seeds": [0, 1, 2],
        "finetune": {"limit": None, "epochs": 3},
        "diff": {"limit": None},
        "validate": {"limit": 100, "controls": 20},
        "lora": {
            "arms": list(ARMS),
            "epochs": 3,
            "limit": None,
            "random_draws": 3,
            "rouge_val_limit": 32,
        },
        "evaluate": {"limit": None},
    },
}


# Options the study sets itself (models, data, paths, what each arm adapts): not settable.
_MANAGED = {
    "model",
    "data",
    "out",
    "base",
    "finetuned",
    "adapter",
    "circuit",
    "diff",
    "method",
    "layers",
    "heads",
    "equal_budget",
    "resume",
    "overwrite",
    "max_length",
    "template",
    "rouge_every_epoch",
    "control_diff",
    "scan",
    "progress",
    "max_steps",
}
LORA_STUDY_KEYS = ("arms", "random_draws", "heads_per_layer", "rouge_val_limit")


def section_keys(section: str) -> set[str]:
    """The options a section accepts: its stage config's fields, less those the study manages."""
    from sumcircuit.analysis.diff import DiffConfig
    from sumcircuit.analysis.locate import LocateConfig
    from sumcircuit.analysis.validate import ValidateConfig
    from sumcircuit.evaluation.evaluate import EvaluateConfig
    from sumcircuit.training.config import FinetuneConfig

    stage = {
        "finetune": FinetuneConfig,
        "lora": FinetuneConfig,
        "diff": DiffConfig,
        "locate": LocateConfig,
        "validate": ValidateConfig,
        "evaluate": EvaluateConfig,
    }[section]
    keys = {f.name for f in fields(stage)} - _MANAGED
    return keys | set(LORA_STUDY_KEYS) if section == "lora" else keys


@dataclass
class StudyConfig:
    model: str = "smollm2-135m"
    data: str = "xsum"
    preset: str | None = None
    max_length: int = 384
    template: str = "plain"
    seeds: list[int] = field(default_factory=lambda: [0])
    finetune: dict[str, Any] = field(default_factory=dict)
    diff: dict[str, Any] = field(default_factory=dict)
    locate: dict[str, Any] = field(default_factory=dict)
    validate: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for section, defaults in SECTION_DEFAULTS.items():
            given = getattr(self, section) or {}
            if not isinstance(given, dict):
                raise SumcircuitError(f"config section {section!r} must be a mapping of options")
            reject_unknown_keys(given, section_keys(section), f"section {section!r}")
            setattr(self, section, {**defaults, **given})
        arms = self.lora["arms"]
        bad = [a for a in arms if a not in ARMS]
        if bad or not arms:
            raise SumcircuitError(f"unknown LoRA arm(s) {bad}; valid: {', '.join(ARMS)}")
        if "standard" not in arms:
            raise SumcircuitError(
                "the LoRA arms must include 'standard': every arm is compared to it"
            )
        if not self.seeds:
            raise SumcircuitError("seeds must list at least one seed")
        if self.max_length < 32:
            raise SumcircuitError(
                f"max_length={self.max_length} is too short for a document and summary"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise SumcircuitError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SumcircuitError(
            f"config file {str(path)!r} is not valid YAML{where}: {problem}"
        ) from err
    if not isinstance(data, dict):
        raise SumcircuitError(
            f"config file {str(path)!r} must be a mapping of options at the top level"
        )
    return data


def parse_override(text: str) -> dict[str, Any]:
    """``section.key=value`` (or ``key=value``) into a nested dict; the value is parsed as YAML."""
    if "=" not in text:
        raise SumcircuitError(
            f"--set {text!r} must look like section.key=value, e.g. lora.epochs=2"
        )
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw else None
    parts = key.strip().split(".")
    if len(parts) == 1:
        return {parts[0]: value}
    if len(parts) == 2:
        return {parts[0]: {parts[1]: value}}
    raise SumcircuitError(f"--set {text!r}: use at most one dot (section.key=value)")


def build_config(
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> StudyConfig:
    """CLI flags (``overrides``, ``sets``) > YAML file > preset > defaults."""
    data: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise SumcircuitError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        data = _merge(data, PRESETS[preset]) | {"preset": preset}
    if config_file is not None:
        file_data = read_yaml(config_file)
        reject_unknown_keys(file_data, StudyConfig, f"config file {str(config_file)!r}")
        if file_data.get("preset") and preset is None:
            return build_config(
                preset=file_data["preset"], config_file=config_file, overrides=overrides, sets=sets
            )
        data = _merge(data, file_data)
    for text in sets or []:
        override = parse_override(text)
        reject_unknown_keys(override, StudyConfig, f"--set {text!r}")
        data = _merge(data, override)
    data = _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    reject_unknown_keys(data, StudyConfig, "the study config")
    return StudyConfig(**data)
