"""``sumcircuit run``: the whole study in one resumable command.

    finetune (full) ─► diff ─► attribute/<method> ... ─► [scan] ─► faithfulness ─► locate
        ─► validate ─► LoRA arms ─► evaluate ─► summary + report

Each attribution method of ``attribute.methods`` (``atp``, ``ig-weights``, ...) is a stage of
its own and a locator of its own in faithfulness.

``scan`` (with ``scan.limit`` > 0) patches every layer alone on the first selection documents:
the exact effects the attribution is checked against (``summary.json``
``attribution_vs_exact``) and faithfulness's ``exact`` locator.

``locate`` takes the locator whose circuits were the most faithful on held-out validation
documents (``locate.score: faithful``); with the ``targeted-kl`` arm, a ``locate-kl`` stage keeps
the paper's KL choice beside it.

With ``finetuned`` set (``--finetuned``), an existing fine-tune is checked against the base
before any stage and the finetune stage only records it (path and weights checksum).

Each box is a stage of :class:`~sumcircuit.study.stages.StageRunner` in its own folder of the run
directory; a finished stage with unchanged inputs is skipped, so a killed run resumes where it
stopped (a LoRA arm killed mid-training resumes from its own checkpoint).
"""

from __future__ import annotations

import logging
import math
import random
import shutil
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sumcircuit.analysis.circuit import Circuit
from sumcircuit.errors import SumcircuitError
from sumcircuit.evaluation.evaluate import EvaluateConfig
from sumcircuit.io import check_writable_dir, read_json, write_json
from sumcircuit.layout import RunLayout
from sumcircuit.study.config import StudyConfig
from sumcircuit.study.external import EXTERNAL_FILE, check_external
from sumcircuit.study.stages import StageRunner
from sumcircuit.training.config import FinetuneConfig

if TYPE_CHECKING:
    from sumcircuit.analysis.diff_result import DiffResult

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
C = TypeVar("C")
# Relative expected cost of each kind of stage on the CPU (for the time estimate).
_WEIGHTS = {
    "finetune": 3.0,
    "diff": 1.0,
    "attribute": 0.5,
    "scan": 0.5,
    "faithfulness": 1.0,
    "locate": 0.05,
    "locate-kl": 0.05,
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
    arm: str,
    circuit: Circuit,
    kl_circuit: Circuit,
    ranked: list[int],
    n_layers: int,
    draw: int,
    seed: int,
) -> list[int]:
    """The layers an arm adapts. A random draw is one set of layers, drawn from ``draw`` and the
    study's ``seed`` (not the arm's training seed), so every seed of ``random<draw>`` trains the
    layers its summary row reports. The anti arm is the ``k`` layers KL ranks lowest among those
    outside the circuit: a circuit from another locator can hold a low-KL layer."""
    k = len(circuit.layers)
    if arm in ("targeted", "targeted-equal-budget", "heads"):
        return circuit.layers
    if arm == "targeted-kl":
        return kl_circuit.layers
    others = [layer for layer in range(n_layers) if layer not in circuit.layers]
    if arm == "anti":
        return sorted([layer for layer in ranked if layer in others][-k:])
    if arm == "random":
        return _random_layers(others, min(k, len(others)), seed, draw)
    raise SumcircuitError(f"arm {arm!r} has no layer rule")


def _random_layers(others: list[int], k: int, seed: int, draw: int) -> list[int]:
    """Draw ``draw`` (from 1) of ``k`` of ``others``: each draw its own seeded generator, redrawn
    while it repeats an earlier draw and unused sets remain, so draws differ where they can."""
    drawn: list[list[int]] = []
    for d in range(1, draw + 1):
        rng = random.Random(f"{seed}-{d}")
        layers = sorted(rng.sample(others, k))
        while layers in drawn and len(drawn) < math.comb(len(others), k):
            layers = sorted(rng.sample(others, k))
        drawn.append(layers)
    return drawn[-1]


def _circuit_heads(circuit: Circuit, diff: DiffResult, per_layer: int) -> list[tuple[int, int]]:
    """The circuit's heads, or for a layer circuit its top heads by KL in each circuit layer."""
    if circuit.heads:
        return circuit.heads
    return [(layer, h) for layer in circuit.layers for h in diff.top_heads(layer, per_layer, "kl")]


def _in_run(config: C, run: Path, *names: str) -> C:
    """``config`` with its run-relative paths ``names`` made paths in the run directory."""
    return replace(config, **{name: str(run / getattr(config, name)) for name in names})


def disk_needed(config: StudyConfig) -> int:
    """Peak bytes the study writes, estimated before any model loads: the full fine-tune (its
    model copy and checkpoint, see :func:`~sumcircuit.training.loop.disk_needed`) and one LoRA
    arm training at a time (finished arms keep only their small adapter); tables are small."""
    from sumcircuit.training.loop import disk_needed as training_needs

    full = 0 if config.finetuned else training_needs(config.finetune)  # external: nothing written
    return full + training_needs(config.lora.arm())


def run_study(config: StudyConfig, out: str | Path, *, overwrite: bool = False) -> Path:
    """Run (or resume) every stage of the study into ``out``; return the report path."""
    from sumcircuit.analysis.attribute import run_attribute
    from sumcircuit.analysis.diff import DiffResult, run_diff
    from sumcircuit.analysis.faithfulness import faithfulness
    from sumcircuit.analysis.locate import locate
    from sumcircuit.analysis.scan import scan
    from sumcircuit.analysis.validate import validate
    from sumcircuit.evaluation.evaluate import evaluate
    from sumcircuit.models.loader import check_available
    from sumcircuit.report.causal_plots import plot_faithfulness, plot_scan
    from sumcircuit.report.plots import plot_diff
    from sumcircuit.study.summary import write_summary
    from sumcircuit.training.loop import finetune

    out = Path(out)
    check_available(config.finetune.model)  # an unknown model fails before --out is touched
    # An external fine-tune is checked against the base before anything is written.
    external = check_external(config.model, config.finetuned) if config.finetuned else None
    check_writable_dir(out, need_bytes=disk_needed(config))
    check_run_dir(out, config, overwrite)
    seeds = config.seeds
    lora = config.lora
    draws = lora.random_draws
    arms = [(a, d) for a in lora.arms for d in (range(1, draws + 1) if a == "random" else [0])]
    arm_names = [f"{a}{d if a == 'random' and draws > 1 else ''}" for a, d in arms]
    eval_names = ["base", "full"] + [f"{n}-s{s}" for n in arm_names for s in seeds]
    with_kl = "targeted-kl" in lora.arms
    scanned = ("scan",) if config.scan.enabled else ()
    attributions = tuple(config.attribute.folders)
    planned = ["finetune", "diff", *attributions, *scanned, "faithfulness", "locate"]
    planned += ["locate-kl"] * with_kl + ["validate"]
    planned += [f"lora/{n}-s{s}" for n in arm_names for s in seeds]
    planned += [f"evaluate/{n}" for n in eval_names]
    weights = {name: _WEIGHTS[name.split("/")[0]] for name in planned}
    for method, folder in zip(config.attribute.methods, attributions, strict=True):
        if method != "atp":  # an IG method: ig_steps passes where atp makes two
            weights[folder] *= max(1.0, config.attribute.ig_steps / 2)
    if external is not None:  # nothing to time: left out of the estimate
        del weights["finetune"]
    runner = StageRunner(out, planned, weights)

    # Each stage hashes its resolved config (every field, defaults filled in), whose paths are
    # relative to the run directory; it runs with them made absolute.
    def do_finetune(folder: Path) -> None:
        (folder / EXTERNAL_FILE).unlink(missing_ok=True)  # an earlier run's external record
        finetune(replace(config.finetune, out=str(folder)))

    if external is None:
        runner.run("finetune", config.finetune, do_finetune)
    else:  # recorded, not trained: its hash covers the model's checksum
        runner.run("finetune", external.to_dict(), external.save)
    # The fine-tuned model: the finetune stage's folder (run-relative), or the external one.
    ft_in_run: tuple[str, ...] = ("finetuned",) if external is None else ()

    def do_diff(folder: Path) -> None:
        result = run_diff(_in_run(config.diff, out, *ft_in_run))
        result.save(folder)
        plot_diff(folder, folder / "plots")

    runner.run("diff", config.diff, do_diff, after=("finetune",))
    diff = DiffResult.load(out / "diff")

    for method, name in zip(config.attribute.methods, attributions, strict=True):
        attribute_config = config.attribute.stage(method)

        def do_attribute(folder: Path, attribute_config: Any = attribute_config) -> None:
            run_attribute(_in_run(attribute_config, out, *ft_in_run)).save(folder)

        runner.run(name, attribute_config, do_attribute, after=("finetune",))

    def do_scan(folder: Path) -> None:
        scan(_in_run(config.scan, out, *ft_in_run)).save(folder)
        plot_scan(folder)

    if scanned:
        runner.run("scan", config.scan, do_scan, after=("finetune",))

    def do_faithfulness(folder: Path) -> None:
        faith = replace(
            _in_run(config.faithfulness, out, *ft_in_run, "diff", *scanned),
            attribution=[str(out / a) for a in config.faithfulness.attribution],
        )
        faithfulness(faith).save(folder)
        plot_faithfulness(folder)

    runner.run(
        "faithfulness",
        config.faithfulness,
        do_faithfulness,
        after=("diff", *attributions, *scanned),
    )
    sources = ("diff", *attributions, *scanned, "faithfulness")

    def do_locate(folder: Path, locate_config: Any = config.locate) -> None:
        circuit = locate(_in_run(locate_config, out, "diff", "attribution", "faithfulness"))
        circuit.save(folder)

    runner.run("locate", config.locate, do_locate, after=sources)
    circuit = Circuit.load(out / "locate")
    kl_circuit = circuit
    if with_kl:  # the paper's choice, beside the faithful one
        kl_config = replace(config.locate, score="kl")
        runner.run(
            "locate-kl", kl_config, partial(do_locate, locate_config=kl_config), after=sources
        )
        kl_circuit = Circuit.load(out / "locate-kl")

    def do_validate(folder: Path) -> None:
        result = validate(_in_run(config.validate, out, *ft_in_run, "circuit"))
        result.save(folder)

    runner.run("validate", config.validate, do_validate, after=("locate",))

    n_layers, ranked = diff.n_layers, diff.layers_ranked
    lora_stages: list[str] = []
    for (arm, draw), name in zip(arms, arm_names, strict=True):
        for seed in seeds:
            stage = f"lora/{name}-s{seed}"
            adapts: dict[str, Any] = {}
            if arm == "heads":
                adapts["heads"] = _circuit_heads(circuit, diff, lora.heads_per_layer)
            elif arm != "standard":
                adapts["layers"] = _arm_layers(
                    arm, circuit, kl_circuit, ranked, n_layers, draw, seeds[0]
                )
            arm_config = lora.arm(
                seed=seed, out=stage, equal_budget=arm == "targeted-equal-budget", **adapts
            )

            def do_lora(folder: Path, arm_config: FinetuneConfig = arm_config) -> None:
                finetune(replace(arm_config, out=str(folder)))

            after = {"standard": (), "targeted-kl": ("locate-kl",)}.get(arm, ("locate",))
            runner.run(stage, arm_config, do_lora, after=after)
            lora_stages.append(stage)

    # What each evaluation scores: model, adapter, the stages it needs, which paths are stage
    # outputs in the run directory.
    targets: dict[str, tuple[str, str | None, tuple[str, ...], tuple[str, ...]]] = {
        "base": (config.model, None, (), ()),
        "full": (
            config.diff.finetuned,
            None,
            ("finetune",),
            ("model",) if external is None else (),
        ),
    }
    for stage in lora_stages:
        targets[stage.removeprefix("lora/")] = (config.model, stage, (stage,), ("adapter",))
    for key, (model, adapter, after, in_run) in targets.items():
        eval_config = replace(config.evaluate, model=model, adapter=adapter)

        def do_eval(
            folder: Path, eval_config: EvaluateConfig = eval_config, in_run: tuple = in_run
        ) -> None:
            evaluate(replace(_in_run(eval_config, out, *in_run), out=str(folder)))

        runner.run(f"evaluate/{key}", eval_config, do_eval, after=after)

    summary_path = write_summary(RunLayout(out), config, arm_names=arm_names, runner=runner)
    log.info("summary: %s", summary_path)
    from sumcircuit.report.html import build_report

    return build_report(out)
