"""``sumcircuit run``: the whole study in one resumable command.

    finetune (full) ─► diff ─► locate ─► validate ─► LoRA arms ─► evaluate ─► summary + report

Each box is a stage of :class:`~sumcircuit.study.stages.StageRunner` in its own folder of the run
directory; a finished stage with unchanged inputs is skipped, so a killed run resumes where it
stopped (a LoRA arm killed mid-training resumes from its own checkpoint).
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sumcircuit.analysis.circuit import Circuit
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import read_json, write_json
from sumcircuit.study.config import LORA_STUDY_KEYS, StudyConfig
from sumcircuit.study.stages import StageRunner

if TYPE_CHECKING:
    from sumcircuit.analysis.diff import DiffResult

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
# Relative expected cost of each kind of stage on the CPU (for the time estimate).
_WEIGHTS = {
    "finetune": 3.0,
    "diff": 1.0,
    "locate": 0.05,
    "validate": 2.0,
    "lora": 2.0,
    "evaluate": 0.4,
}


def check_run_dir(out: Path, config: StudyConfig, overwrite: bool) -> None:
    """Refuse a run directory that holds a different study (other model or data)."""
    marker = out / STUDY_FILE
    if marker.exists():
        previous = read_json(marker)
        same = previous.get("model") == config.model and previous.get("data") == config.data
        if not same and not overwrite:
            raise SumcircuitError(
                f"{str(out)!r} holds another study (model {previous.get('model')!r}, data "
                f"{previous.get('data')!r}); choose another --out or pass --overwrite"
            )
        if not same:
            shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise SumcircuitError(
            f"{str(out)!r} is not empty and holds no sumcircuit study; choose another --out "
            "or pass --overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"model": config.model, "data": config.data, "config": config.to_dict()})


def _arm_layers(
    arm: str, circuit: Circuit, ranked: list[int], n_layers: int, draw: int, seed: int
) -> list[int]:
    k = len(circuit.layers)
    if arm in ("targeted", "targeted-equal-budget", "heads"):
        return circuit.layers
    if arm == "anti":
        return sorted(ranked[-k:])
    if arm == "random":
        others = [layer for layer in range(n_layers) if layer not in circuit.layers]
        return sorted(random.Random(f"{seed}-{draw}").sample(others, min(k, len(others))))
    raise SumcircuitError(f"arm {arm!r} has no layer rule")


def _circuit_heads(circuit: Circuit, diff: DiffResult, per_layer: int) -> list[tuple[int, int]]:
    """The circuit's heads, or for a layer circuit its top heads by KL in each circuit layer."""
    if circuit.heads:
        return circuit.heads
    return [(layer, h) for layer in circuit.layers for h in diff.top_heads(layer, per_layer, "kl")]


def run_study(config: StudyConfig, out: str | Path, *, overwrite: bool = False) -> Path:
    """Run (or resume) every stage of the study into ``out``; return the report path."""
    from sumcircuit.analysis.diff import DiffConfig, DiffResult, run_diff
    from sumcircuit.analysis.locate import LocateConfig, locate
    from sumcircuit.analysis.validate import ValidateConfig, validate
    from sumcircuit.evaluation.evaluate import EvalResult, EvaluateConfig, evaluate
    from sumcircuit.report.plots import plot_diff
    from sumcircuit.study.summary import write_summary
    from sumcircuit.training.config import FinetuneConfig
    from sumcircuit.training.loop import finetune

    out = Path(out)
    check_run_dir(out, config, overwrite)
    common = {"max_length": config.max_length, "template": config.template}
    seeds = config.seeds
    lora = config.lora
    draws = lora["random_draws"]
    arms = [(a, d) for a in lora["arms"] for d in (range(1, draws + 1) if a == "random" else [0])]
    arm_names = [f"{a}{d if a == 'random' and draws > 1 else ''}" for a, d in arms]
    eval_names = ["base", "full"] + [f"{n}-s{s}" for n in arm_names for s in seeds]
    planned = ["finetune", "diff", "locate", "validate"]
    planned += [f"lora/{n}-s{s}" for n in arm_names for s in seeds]
    planned += [f"evaluate/{n}" for n in eval_names]
    weights = {name: _WEIGHTS[name.split("/")[0]] for name in planned}
    runner = StageRunner(out, planned, weights)

    ft_dir = out / "finetune"
    ft_options = {
        "model": config.model,
        "data": config.data,
        "method": "full",
        "seed": seeds[0],
        **common,
        **config.finetune,
    }

    def do_finetune(folder: Path) -> None:
        finetune(
            FinetuneConfig.from_dict(
                ft_options | {"out": str(folder), "resume": True, "overwrite": True}
            )
        )

    runner.run("finetune", ft_options, do_finetune)

    diff_options = {
        "base": config.model,
        "finetuned": str(ft_dir),
        "data": config.data,
        "per_doc": True,
        **common,
        **config.diff,
    }

    def do_diff(folder: Path) -> None:
        result = run_diff(DiffConfig.from_dict(diff_options))
        result.save(folder)
        plot_diff(folder, folder / "plots")

    runner.run("diff", diff_options, do_diff, after=("finetune",))
    diff = DiffResult.load(out / "diff")

    locate_options = dict(config.locate)

    def do_locate(folder: Path) -> None:
        circuit = locate(LocateConfig.from_dict(locate_options | {"diff": str(out / "diff")}))
        circuit.save(folder)

    runner.run("locate", locate_options, do_locate, after=("diff",))
    circuit = Circuit.load(out / "locate")

    validate_options = {
        "base": config.model,
        "finetuned": str(ft_dir),
        "data": config.data,
        "seed": seeds[0],
        **common,
        **config.validate,
    }

    def do_validate(folder: Path) -> None:
        result = validate(
            ValidateConfig.from_dict(
                validate_options | {"circuit": str(Circuit.path(out / "locate"))}
            )
        )
        result.save(folder)

    runner.run("validate", validate_options, do_validate, after=("locate",))

    n_layers, ranked = diff.n_layers, diff.layers_ranked
    train_keys = {k: v for k, v in lora.items() if k not in LORA_STUDY_KEYS}
    lora_dirs: dict[str, Path] = {}
    for (arm, draw), name in zip(arms, arm_names, strict=True):
        for seed in seeds:
            options = {
                "model": config.model,
                "data": config.data,
                "method": "lora",
                "seed": seed,
                "rouge_every_epoch": lora["rouge_val_limit"],
                **common,
                **train_keys,
            }
            if arm == "heads":
                options["heads"] = [
                    list(h) for h in _circuit_heads(circuit, diff, lora["heads_per_layer"])
                ]
            elif arm != "standard":
                options["layers"] = _arm_layers(arm, circuit, ranked, n_layers, draw, seed)
            options["equal_budget"] = arm == "targeted-equal-budget"
            stage = f"lora/{name}-s{seed}"

            def do_lora(folder: Path, options: dict[str, Any] = options) -> None:
                finetune(
                    FinetuneConfig.from_dict(
                        options | {"out": str(folder), "resume": True, "overwrite": True}
                    )
                )

            runner.run(stage, options, do_lora, after=("locate",) if arm != "standard" else ())
            lora_dirs[f"{name}-s{seed}"] = out / stage

    eval_common = {"data": config.data, **common, **config.evaluate}
    targets: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
        "base": (config.model, None, ()),
        "full": (str(ft_dir), None, ("finetune",)),
    }
    for key, folder in lora_dirs.items():
        targets[key] = (config.model, str(folder), (f"lora/{key}",))
    for key, (model, adapter, after) in targets.items():
        options = eval_common | {"model": model, "adapter": adapter}

        def do_eval(folder: Path, options: dict[str, Any] = options) -> None:
            evaluate(EvaluateConfig.from_dict(options | {"out": str(EvalResult.path(folder))}))

        runner.run(f"evaluate/{key}", options, do_eval, after=after)

    summary_path = write_summary(out, config, arm_names=arm_names, runner=runner)
    log.info("summary: %s", summary_path)
    from sumcircuit.report.html import build_report

    return build_report(out)
