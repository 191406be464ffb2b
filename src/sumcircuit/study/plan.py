"""The study's stage graph, declared once.

Each :class:`Stage` is a folder of the run directory (its name, from
:class:`~sumcircuit.layout.RunLayout`), the config it hashes, the function that fills its folder,
and its inputs: the config fields whose values name other stages (``diff: diff``,
``sources: {atp: attribute/atp}``, ``adapter: lora/targeted-s0``) and, for a config that can
only be built once upstream stages finished (a LoRA arm's layers come from the circuit),
``after``. :meth:`~sumcircuit.study.stages.StageRunner.run_plan` derives the order, the
skip/redo decisions and the absolute paths each stage is handed from these declarations.

:func:`plan_study` reads like the pipeline::

    finetune ─► diff ─► attribute/<method> ... ─► [exact] ─► faithfulness ─► locate [locate-kl]
        ─► validate ─► [adapt] ─► [placement] ─► lora/<arm>-s<seed> ... ─► evaluate/<model> ...

``adapt`` (with ``adapt.enabled``, by default when the curve runs) scores every layer of the base
model from the first train pairs (it reads no other stage); ``placement`` (with
``placement.enabled``) trains LoRA on each locator's top-k layers for the placement curve, the
adapt stage's locators among them; an arm that ``reads`` it (``targeted-adapt``) is planned
after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sumcircuit.analysis.locate.circuit import Circuit
from sumcircuit.errors import SumcircuitError
from sumcircuit.layout import RunLayout
from sumcircuit.study.arms import FAITHFUL, Arm, ArmContext, arm, distinct_random_sets
from sumcircuit.study.config import StudyConfig
from sumcircuit.study.external import EXTERNAL_FILE, ExternalFinetune
from sumcircuit.study.stages import Stage

__all__ = ["StudyPlan", "plan_study"]


@dataclass
class StudyPlan:
    stages: list[Stage]
    arm_names: list[str]  # the LoRA table's rows, in order

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]


def plan_study(
    config: StudyConfig, layout: RunLayout, external: ExternalFinetune | None
) -> StudyPlan:
    """Every stage of the study (see the module docstring)."""
    from sumcircuit.analysis.causal.attribute import run_attribute
    from sumcircuit.analysis.causal.exact import exact_scan
    from sumcircuit.analysis.causal.faithfulness import faithfulness
    from sumcircuit.analysis.causal.validate import validate
    from sumcircuit.analysis.diff.run import run_diff
    from sumcircuit.analysis.locate.rules import locate
    from sumcircuit.evaluation.evaluate import evaluate
    from sumcircuit.report.causal_plots import plot_exact, plot_faithfulness
    from sumcircuit.report.plots import plot_diff
    from sumcircuit.training.loop import finetune

    L = RunLayout
    # A fine-tune made elsewhere is recorded, not trained: its stage hashes the model's checksum,
    # and every stage that reads the model depends on that record.
    ft = ("finetuned",) if external is None else ()
    read_ft = () if external is None else (L.FINETUNE,)

    def pair(name: str, options: Any, fn: Callable, *paths: str, weight: float) -> Stage:
        return Stage(name, options, fn, paths=(*ft, *paths), after=read_ft, weight=weight)

    if external is None:
        stages = [Stage(L.FINETUNE, config.finetune, _finetune(finetune, layout), weight=3.0)]
    else:
        stages = [Stage(L.FINETUNE, external.to_dict(), lambda _, folder: external.save(folder))]
    stages.append(pair(L.DIFF, config.diff, _saved(run_diff, plot_diff, L.DIFF_PLOTS), weight=1))
    for method in config.attribute.methods:
        weight = 0.5 * max(1.0, config.attribute.ig_steps / 2 if method != "atp" else 1.0)
        stage = config.attribute.stage(method)
        stages.append(pair(L.attribute(method), stage, _saved(run_attribute), weight=weight))
    if config.exact.enabled:
        stages.append(pair(L.EXACT, config.exact, _saved(exact_scan, plot_exact), weight=0.5))
    stages.append(
        pair(
            L.FAITHFULNESS,
            config.faithfulness,
            _saved(faithfulness, plot_faithfulness),
            "diff",
            "sources",
            weight=1.0,
        )
    )
    arms = [arm(name) for name in config.lora.arms]
    circuits = [
        FAITHFUL,
        *dict.fromkeys(a.circuit for a in arms if a.circuit not in (None, FAITHFUL)),
    ]
    for locator in circuits:
        options = config.locate if locator == FAITHFUL else replace(config.locate, score=locator)
        paths = ("diff", "faithfulness", "sources")
        stages.append(Stage(_locate_stage(locator), options, _saved(locate), paths, weight=0.05))
    stages.append(pair(L.VALIDATE, config.validate, _saved(validate), "circuit", weight=2.0))
    if config.adapt.enabled:  # the model and the train split only: no input stage
        stages.append(Stage(L.ADAPT, config.adapt, _adapt, weight=1.5))
    if config.placement.enabled:
        stages.append(
            Stage(
                L.PLACEMENT,
                config.placement,
                _placement,
                paths=("diff", "sources"),
                weight=_placement_weight(config),
            )
        )

    arm_names, evaluated = [], {L.BASE_EVAL: config.evaluate, L.FULL_EVAL: _full_eval(config)}
    for spec in arms:
        for row, draw in spec.variants(config.lora.random_draws):
            arm_names.append(row)
            for seed in config.seeds:
                name = L.lora(row, seed)
                after = () if spec.circuit is None else (L.DIFF, _locate_stage(spec.circuit))
                after += spec.reads
                options = _arm_options(config, layout, spec, draw, seed, name)
                stages.append(
                    Stage(name, options, _finetune(finetune, layout), after=after, weight=2.0)
                )
                evaluated[L.run_key(row, seed)] = replace(config.evaluate, adapter=name)
    for key, eval_config in evaluated.items():
        stages.append(
            Stage(
                L.evaluate(key),
                eval_config,
                _saved(evaluate, out=True),
                ("model", "adapter"),
                after=read_ft if key == L.FULL_EVAL else (),
                weight=0.4,
            )
        )
    return StudyPlan(stages, arm_names)


def _locate_stage(locator: str) -> str:
    return RunLayout.locate(None if locator == FAITHFUL else locator)


def _full_eval(config: StudyConfig) -> Any:
    """The full fine-tune's evaluation: the finetune stage's model folder, or the external one."""
    return replace(config.evaluate, model=config.diff.finetuned)


def _arm_options(
    config: StudyConfig, layout: RunLayout, spec: Arm, draw: int, seed: int, out: str
) -> Callable[[], Any]:
    """The arm's fine-tuning config, built once the circuits it reads exist."""

    def build() -> Any:
        adapts: dict[str, Any] = {}
        if spec.circuit is not None:
            from sumcircuit.analysis.diff.result import DiffResult
            from sumcircuit.analysis.placement.result import PlacementResult

            diff = DiffResult.load(layout / RunLayout.DIFF)
            study = Circuit.load(layout / _locate_stage(FAITHFUL))
            own = Circuit.load(layout / _locate_stage(spec.circuit))
            context = ArmContext(
                own,
                study,
                ranked=diff.layers_ranked,
                n_layers=diff.n_layers,
                draw=draw,
                seed=config.seeds[0],
                diff=diff,
                heads_per_layer=config.lora.heads_per_layer,
                placement=(
                    PlacementResult.load(layout / RunLayout.PLACEMENT)
                    if RunLayout.PLACEMENT in spec.reads
                    else None
                ),
                rank=config.lora.rank,
                alpha=config.lora.alpha,
            )
            if spec.drawn:
                _check_draws(config.lora.random_draws, diff.n_layers, len(study.layers))
            adapts = spec.adapts(context)
        return config.lora.arm(seed=seed, out=out, **adapts)

    return build


def _check_draws(draws: int, n_layers: int, circuit_size: int) -> None:
    """Refuse, before a drawn arm trains, more draws than distinct random layer sets (the
    preflight checks this early when ``locate.k`` fixes the circuit's size)."""
    distinct = distinct_random_sets(n_layers, circuit_size)
    if draws > distinct:
        raise SumcircuitError(
            f"lora.random_draws={draws} asks for more random layer sets than exist: the "
            f"{circuit_size}-layer circuit leaves {distinct} distinct sets among the other "
            f"{n_layers - circuit_size} layers; rerun with --set lora.random_draws={distinct}"
        )


def _placement(stage_config: Any, folder: Path) -> None:
    """The placement curve: its runs and scores in the stage folder, the result and figure."""
    from sumcircuit.analysis.placement.run import placement
    from sumcircuit.report.placement_plots import plot_placement

    placement(replace(stage_config, out=str(folder))).save(folder)
    plot_placement(folder)


def _placement_weight(config: StudyConfig) -> float:
    """The curve's expected cost against a LoRA arm's (2.0): a run is about a third of an arm
    (fewer layers, no validation), with ~5 distinct locator sets besides the random ones per k,
    and up to one more per adaptation locator."""
    section = config.placement
    adapting = len(set(section.sources) & set(config.locator_sources("adapt")))
    per_k = section.random_sets + 5 + adapting
    return 0.7 * (1 + len(section.sizes) * per_k * (2 if section.matched else 1))


def _adapt(stage_config: Any, folder: Path) -> None:
    """The adaptation scores: the probe's run in ``folder/probe`` (resumed after a kill), the
    result in the stage folder."""
    from sumcircuit.analysis.adapt.run import run_adapt

    run_adapt(stage_config, folder).save(folder)


def _finetune(finetune: Callable, layout: RunLayout) -> Callable[[Any, Path], None]:
    """A fine-tuning stage; its runs share the loss before training in the run's cache."""

    def run(stage_config: Any, folder: Path) -> None:
        (folder / EXTERNAL_FILE).unlink(missing_ok=True)  # an earlier run's external record
        cache = str(layout / RunLayout.CACHE)
        finetune(replace(stage_config, out=str(folder), val_cache=cache))

    return run


def _saved(
    compute: Callable, plot: Callable | None = None, plots: str | None = None, *, out: bool = False
) -> Callable[[Any, Path], None]:
    """A stage that computes a result from its config and saves it into its folder (then draws
    its figures there, or in ``folder/plots``); ``out``: the function saves it itself."""

    def run(stage_config: Any, folder: Path) -> None:
        if out:
            compute(replace(stage_config, out=str(folder)))
            return
        compute(stage_config).save(folder)
        if plot is not None and plots:
            plot(folder, folder / plots)
        elif plot is not None:
            plot(folder)

    return run
