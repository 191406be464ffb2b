"""The study config: one YAML for the whole pipeline, with presets, CLI overrides and checks.

Precedence: CLI flags > ``--config`` YAML > ``--preset`` > defaults. Each stage section
(``finetune``, ``diff``, ``attribute``, ``exact``, ``faithfulness``, ``locate``, ``validate``,
``lora``, ``evaluate``, ``placement``, ``adapt``) takes the options of that stage; unknown keys are
refused with the list of valid ones. :func:`build_config` builds every section into its typed
stage config (:class:`~sumcircuit.training.config.FinetuneConfig`, :class:`~sumcircuit.analysis.diff.run.DiffConfig`,
...), so a bad value in any section fails before the first stage starts, naming it as
``section.key``. An option a section does not set takes
its stage config's dataclass default.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from sumcircuit.analysis.adapt.config import AdaptConfig
from sumcircuit.analysis.adapt.result import part_of
from sumcircuit.analysis.causal.attribute import AttributeConfig
from sumcircuit.analysis.causal.attribution import METHODS, method_name
from sumcircuit.analysis.causal.exact import ExactConfig
from sumcircuit.analysis.causal.faithfulness import FaithfulnessConfig
from sumcircuit.analysis.causal.validate import ValidateConfig
from sumcircuit.analysis.diff.run import DiffConfig
from sumcircuit.analysis.locate.registry import LOCATORS, locator, names
from sumcircuit.analysis.locate.rules import FAITHFUL as FAITHFUL_SCORE
from sumcircuit.analysis.locate.rules import LocateConfig
from sumcircuit.analysis.placement.config import PlacementConfig
from sumcircuit.configs import DictConfig, check_at_least, coerce
from sumcircuit.errors import ConfigError, SumcircuitError, reject_unknown_keys
from sumcircuit.evaluation.evaluate import EvaluateConfig
from sumcircuit.layout import RunLayout
from sumcircuit.study.arms import ARMS
from sumcircuit.study.yaml_reader import MAX_BYTES, load_yaml
from sumcircuit.training.config import FinetuneConfig

log = logging.getLogger(__name__)

# The study's own choices, where they differ from the stage configs' defaults: how many
# documents each stage reads (a stage config's default, None, reads them all), and the
# patching stages' and evaluation's batch sizes (8 documents, 16 prompts; the shared default
# is 4).
SECTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "finetune": {"limit": 64},
    # Selection documents (diff and attribution: the same ones) and the faithfulness scoring
    # documents are disjoint parts of the validation split: the first 64 select, the rest score.
    "diff": {"limit": 64},
    "attribute": {"batch_size": 8},
    # The exact layer scan that checks the attribution: off unless given selection documents.
    "exact": {"limit": 0, "batch_size": 8},
    # (faithfulness refuses a selection document unless told to leave it out)
    "faithfulness": {"split": "validation", "batch_size": 8, "exclude_selection": True},
    # The targeted arm's circuit comes from the most faithful locator; targeted-kl keeps KL.
    "locate": {"score": "faithful"},
    # Causal validation of the chosen circuit on test documents: the circuit was chosen on
    # validation documents (selection and faithfulness scoring), so this check is independent.
    "validate": {"limit": 50, "split": "test", "batch_size": 8},
    "lora": {"limit": 64},
    "evaluate": {"limit": 20, "batch_size": 16},
    # The placement curve trains on the LoRA arms' pairs and scores on validation documents past
    # the selection documents (its default eval_offset), never on the test documents.
    "placement": {"limit": 64},
    # A probe of a few steps (LoRA-drop trains a small fraction of the arm's): with batches of 4
    # it reads the same first 32 train pairs as the gradient pass (AdaptConfig's limit).
    "adapt": {"probe_steps": 8},
}
#: The adapt section's options that default to the placement section's: the scores are of the
#: LoRA runs the curve trains (rank, targets, lr), and the stage runs when the curve does.
ADAPT_FROM_PLACEMENT = ("enabled", "rank", "alpha", "targets", "lr")

#: What ``sumcircuit run`` runs without ``--preset`` (or a ``preset`` in its YAML): the stage
#: configs' own defaults read every remaining document (faithfulness alone would patch each
#: validation document for every size and control, hours on a CPU).
DEFAULT_PRESET = "quick"

PRESETS: dict[str, dict[str, Any]] = {
    # Sized for about 10 minutes on a 2-core CPU with the default model (measured times: README
    # "Performance").
    "quick": {
        "max_length": 256,
        "seeds": [0],
        # The full fine-tune's learning curve is not read by the summary: no extra eval points.
        "finetune": {"limit": 64, "epochs": 1, "eval_points": 0},
        "diff": {"limit": 32},
        # atp only: the IG methods cost several times atp (benchmarks/RESULTS.md)
        "attribute": {"batch_size": 4},
        # 4 scoring documents; random sets only at the circuit's size (k = 3): every set costs
        # two patched forwards per batch (sufficiency, necessity).
        "faithfulness": {"limit": 36, "sizes": [1, 3, 8], "control_sizes": [3], "batch_size": 4},
        "validate": {"limit": 8, "controls": 20, "batch_size": 4},
        "lora": {
            "arms": ["standard", "targeted", "random"],
            "epochs": 1,
            "limit": 48,
            # 12 steps: at 1e-3 the validation loss falls as much as the full fine-tune's
            # (README "Sizes" has the lr sweep)
            "lr": 1e-3,
            "random_draws": 1,
            "rouge_val_limit": 8,
        },
        "evaluate": {"limit": 20, "batch_size": 20, "max_new_tokens": 40},
    },
    # Sized to decide the claims within 60 minutes on a 2-core CPU with the default model; each
    # size's reason is in the README ("The standard preset: why each size").
    "standard": {
        "max_length": 256,
        "seeds": [0],
        # every training pair once: 197 steps, a fine-tune that has learned the task
        "finetune": {"limit": None, "epochs": 1},
        # 64 validation documents select; 12 others (64 < i <= 76) score faithfulness
        "diff": {"limit": 64},
        # atp only, to stay within the budget; --set 'attribute.methods=[atp,ig-weights]' adds IG
        "attribute": {"batch_size": 4},
        "exact": {"limit": 8, "batch_size": 4},
        "faithfulness": {"limit": 76, "sizes": [1, 3, 8], "control_sizes": [3], "batch_size": 4},
        "validate": {"limit": 16, "controls": 20, "batch_size": 4},
        "lora": {
            "arms": ["standard", "targeted", "targeted-kl", "random"],
            "epochs": 1,
            "limit": 256,
            "lr": 1e-3,
            "random_draws": 3,
            "rouge_val_limit": 8,
        },
        "evaluate": {"limit": None, "batch_size": 16, "max_new_tokens": 40},
    },
    # The paper's scale as far as the data allows (every arm, 3 seeds, 3 random draws); meant
    # for a GPU or a long CPU run (its stages and estimated cost: README "paper preset").
    "paper": {
        "max_length": 512,
        "seeds": [0, 1, 2],
        "finetune": {"limit": None, "epochs": 3},
        "diff": {"limit": 64},
        "faithfulness": {"limit": None, "controls": 20},
        "validate": {"limit": 100, "controls": 20},
        "lora": {
            "arms": ["standard", "targeted", "targeted-kl", "random", "anti"]
            + ["targeted-equal-budget", "heads"],
            "epochs": 3,
            "limit": None,
            "random_draws": 3,
            "rouge_val_limit": 32,
        },
        "evaluate": {"limit": None},
    },
}

# "Where to adapt" (README): the quick study plus the placement curve and the two arms that read
# it, sized for <= 60 minutes on a 2-core CPU with smollm2-135m. Arithmetic, from the measured
# per-unit costs (README "The standard preset: why each size", benchmarks/RESULTS.md): the quick
# study takes 9-14 min; the curve trains one run per distinct layer set — at k = 1, 3, 8 at most
# 9 locator sets (kl, js, entropy, weight, actmag, atp, first-k, last-k, evenly-spaced; shared
# sets train once) + 5 random = 14, so <= 43 runs with standard. A run is 12 LoRA steps (48
# pairs, batch 4 x 256 tokens) at <= 1.5 s = 18 s, a model load ~1 s and the outcome (32
# validation documents = 8 forwards of 4 at ~1.2 s) ~10 s: ~30 s, 43 x 30 s = 21.5 min. The
# arms targeted-adapt and circuit-rank: 2 x (~90 s training + ~20 s evaluation) = 4 min. In all
# <= 14 + 21.5 + 4 = 40 min. The adapt stage (on with the curve: section "adapt") adds its 6
# adaptation locators, <= 6 more sets per k (18 runs, 9 min), and its own cost: 8 gradient batches
# (a LoRA step plus the weight gradients, ~2.2 s each) and an 8-step probe (~1.5 s a step, plus a
# forward per batch), ~40 s by the same per-step costs (estimated, not yet timed): <= 50 min.
PRESETS["placement"] = _placement_preset = copy.deepcopy(PRESETS["quick"])
_placement_preset["lora"]["arms"] = ["standard", "targeted", "random", "targeted-adapt"] + [
    "circuit-rank"
]
_placement_preset["placement"] = {
    "enabled": True,
    "sizes": [1, 3, 8],
    "random_sets": 5,
    "limit": 48,
    "epochs": 1,
    "lr": 1e-3,
    "eval_limit": 32,
}

# Options the study sets itself (models, data, paths, what each arm adapts): not settable.
_MANAGED = {
    "model",
    "data",
    "document_field",
    "summary_field",
    "out",
    "base",
    "finetuned",
    "adapter",
    "circuit",
    "diff",
    "layers",
    "heads",
    "equal_budget",
    "layer_ranks",
    "resume",
    "overwrite",
    "max_length",
    "template",
    "rouge_every_epoch",
    "control_diff",
    "scan",
    "attribution",
    "sources",
    "faithfulness",
    "progress",
    "max_steps",
    "val_cache",
}
# ... and in one section only: each LoRA arm trains once per top-level seed; the attribution
# reads the diff's documents (both select components, on the same documents), the scan the
# first of them, layer by layer.
_MANAGED_IN = {
    "finetune": {"method"},
    "lora": {"seed", "method"},
    "attribute": {"split", "limit", "method"},
    "exact": {"split", "level"},
    "placement": {"seed", "reserved_splits"},
    "adapt": {"seed", "split"},
}
#: Section names of earlier releases, accepted for one release with a deprecation message.
RENAMED_SECTIONS = {"scan": "exact"}
LORA_STUDY_KEYS = ("arms", "random_draws", "heads_per_layer", "rouge_val_limit")
#: Each seed trains every LoRA arm once more; 20 seeds already give a distribution per arm.
MAX_SEEDS = 20


@dataclass
class LoraStudyConfig(FinetuneConfig):
    """The ``lora`` section: the training options all LoRA arms share, and which arms run."""

    arms: list[str] = field(
        default_factory=lambda: ["standard", "targeted", "random"],
        metadata={"help": f"LoRA arms to train, from {', '.join(ARMS)} (study/arms.py)"},
    )
    random_draws: int = field(
        default=1, metadata={"help": "draws of the random-layers arm (a distribution from 3)"}
    )
    heads_per_layer: int = field(
        default=3, metadata={"help": "heads arm on a layer circuit: top heads by KL per layer"}
    )
    rouge_val_limit: int = field(
        default=16,
        metadata={"help": "validation docs scored with ROUGE-L at each epoch end and eval point"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms:
            raise ConfigError(
                "arms", f"unknown LoRA arm(s) {bad} in {{key}}; valid: {', '.join(ARMS)}"
            )
        if "standard" not in self.arms:
            raise ConfigError("arms", "{key} must include 'standard': every arm is compared to it")
        check_at_least(self, ("random_draws", "heads_per_layer"), 1)
        check_at_least(self, ("rouge_val_limit",), 0)

    def arm(self, **managed: Any) -> FinetuneConfig:
        """The fine-tuning config of one arm: these options plus what the arm adapts."""
        data = {k: v for k, v in self.to_dict().items() if k not in LORA_STUDY_KEYS}
        return FinetuneConfig.from_dict(
            data | {"rouge_every_epoch": self.rouge_val_limit} | managed
        )


@dataclass
class AttributeStudyConfig(AttributeConfig):
    """The ``attribute`` section: one attribution stage per method (``attribute/<method>``), each
    a locator of its own in faithfulness; the first is what ``locate --score attribution`` and
    the report's headline agreement read."""

    methods: list[str] = field(
        default_factory=lambda: ["atp"],
        metadata={"help": f"attribution methods, one stage each, from {', '.join(METHODS)}"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.methods = [method_name(m) for m in self.methods]  # old names, with a warning
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods or len(set(self.methods)) != len(self.methods):
            raise ConfigError(
                "methods",
                f"{{key}} must list distinct methods from {', '.join(METHODS)}; got {self.methods}",
            )
        self.method = self.methods[0]

    def stage(self, method: str) -> AttributeConfig:
        """The config of one method's stage (what that stage hashes: not the other methods)."""
        data = {k: v for k, v in self.to_dict().items() if k != "methods"}
        return AttributeConfig.from_dict(data | {"method": method})

    @staticmethod
    def folder(method: str) -> str:
        return RunLayout.attribute(method)

    @property
    def folders(self) -> list[str]:
        return [self.folder(m) for m in self.methods]


@dataclass
class ExactStudyConfig(ExactConfig):
    """The ``exact`` section: the exact patching scan of every layer alone on the first ``limit``
    selection documents (the diff's split), which the attribution is checked against and which
    faithfulness draws as its ``exact`` locator; ``limit`` 0 runs no scan stage."""

    limit: int = field(
        default=0,
        metadata={"help": "selection documents scanned layer by layer (0: no scan stage)"},
    )

    def __post_init__(self) -> None:
        limit, self.limit = self.limit, 1  # 0 (off) is below PairConfig's bound; checked here
        super().__post_init__()
        self.limit = coerce(limit, int, "limit")
        check_at_least(self, ("limit",), 0)

    @property
    def enabled(self) -> bool:
        return self.limit > 0


@dataclass
class PlacementStudyConfig(PlacementConfig):
    """The ``placement`` section: the placement curve on the study's own locators (the diff's,
    every attribution method, the exact scan and any other stage's that a locator reads), its
    outcome on validation documents past the selection documents; off unless ``enabled``."""

    enabled: bool = field(
        default=False, metadata={"help": "run the placement curve (stage placement)"}
    )


@dataclass(kw_only=True)
class AdaptStudyConfig(AdaptConfig):
    """The ``adapt`` section: the adaptation locators (rgn, fisher, grad-energy, probe-norm,
    probe-act, spectrum-snr of the chosen ``parts``) of the base model, from the first train pairs
    only, which the placement curve draws beside the study's other locators. ``enabled``, ``rank``,
    ``alpha``, ``targets`` and ``lr`` default to the placement section's."""

    enabled: bool = field(
        default=False,
        metadata={"help": "run the adapt stage (default: when placement.enabled)"},
    )


#: Each section's stage config, in the order the study builds them (the runner orders the stages
#: by what they read).
SECTIONS: dict[str, type[DictConfig]] = {
    "finetune": FinetuneConfig,
    "diff": DiffConfig,
    "attribute": AttributeStudyConfig,
    "exact": ExactStudyConfig,
    "faithfulness": FaithfulnessConfig,
    "locate": LocateConfig,
    "validate": ValidateConfig,
    "lora": LoraStudyConfig,
    "evaluate": EvaluateConfig,
    "placement": PlacementStudyConfig,  # after evaluate: it must avoid evaluate's split
    "adapt": AdaptStudyConfig,  # after placement: its defaults are the curve's (see above)
}


def section_keys(section: str) -> set[str]:
    """The options a section accepts: its stage config's fields, less those the study manages."""
    names = {f.name for f in fields(SECTIONS[section])}  # type: ignore[arg-type]
    return names - _MANAGED - _MANAGED_IN.get(section, set())


def _section(help_text: str) -> Any:
    return field(default_factory=dict, metadata={"help": help_text, "section": True})


@dataclass
class StudyConfig(DictConfig):
    """The whole study. Each section is its stage's typed config; the options the study manages
    (models, data, lengths) come from the top level, and the paths of upstream outputs are
    relative to the run directory (``finetune``, ``diff``, ``locate``) — except an external
    ``finetuned`` model, which replaces the finetune stage's output."""

    model: str = field(default="smollm2-135m", metadata={"help": "base model"})
    finetuned: str | None = field(
        default=None,
        metadata={
            "help": "an existing fine-tune of the base model to analyse (directory or Hugging "
            "Face id): no finetune stage"
        },
    )
    data: str = field(default="xsum", metadata={"help": "dataset name, local file or hf:NAME"})
    preset: str | None = field(default=None, metadata={"help": "preset the values start from"})
    max_length: int = field(default=384, metadata={"help": "tokens per example, every stage"})
    template: Literal["plain", "chat"] = field(default="plain", metadata={"help": "prompt"})
    seeds: list[int] = field(
        default_factory=lambda: [0], metadata={"help": "seeds of the LoRA arms, e.g. 0,1,2"}
    )
    finetune: FinetuneConfig = _section("full fine-tuning of the base model")
    diff: DiffConfig = _section("base vs fine-tuned differences")
    attribute: AttributeStudyConfig = _section("attribution patching of every component")
    exact: ExactStudyConfig = _section("exact layer scan of the first selection documents")
    faithfulness: FaithfulnessConfig = _section("faithfulness curves of every locator")
    locate: LocateConfig = _section("circuit selection")
    validate: ValidateConfig = _section("causal validation of the circuit")
    lora: LoraStudyConfig = _section("LoRA arms")
    evaluate: EvaluateConfig = _section("ROUGE and reference log-likelihood of every model")
    placement: PlacementStudyConfig = _section("the placement curve: where LoRA helps most")
    adapt: AdaptStudyConfig = _section("adaptation locators of the base model, for the curve")

    def __post_init__(self) -> None:
        try:  # the top-level values, named by their keys; the sections below
            super().__post_init__()
        except ConfigError as err:
            raise err.relabel(err.field) from None
        if not self.seeds:
            raise ConfigError(
                "seeds", "{key} must list at least one seed, e.g. 0 or 0,1,2", "seeds"
            )
        twice = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if twice:
            raise ConfigError(
                "seeds",
                f"{{key}} names {twice[0]} more than once: the same seed trains the same arms "
                "again; give each seed once",
                "seeds",
            )
        if len(self.seeds) > MAX_SEEDS:
            raise ConfigError(
                "seeds",
                f"{{key}} lists {len(self.seeds)} seeds, more than {MAX_SEEDS}: each seed trains "
                "every LoRA arm again",
                "seeds",
            )
        if self.max_length < 32:
            raise ConfigError(
                "max_length",
                f"{{key}}={self.max_length} is too short for a document and summary; use 128 or "
                "more",
                "max_length",
            )
        if self.finetuned and Path(self.finetuned).expanduser().exists():
            # A local fine-tune is loaded from the run's stages: make it independent of the cwd.
            self.finetuned = str(Path(self.finetuned).expanduser().resolve())
        for name, cls in SECTIONS.items():
            given = getattr(self, name)
            if isinstance(given, DictConfig):  # rebuilt, so the top-level values apply
                given = self.section_dict(name, given)
            if given is None:
                given = {}
            if not isinstance(given, dict):
                raise SumcircuitError(f"config section {name!r} must be a mapping of options")
            reject_unknown_keys(given, section_keys(name), f"section {name!r}")
            values = {**SECTION_DEFAULTS.get(name, {}), **self._inherited(name, given), **given}
            setattr(self, name, cls.from_dict(self._managed(name) | values, section=name))
        # the curve reads every planned stage's locators, the adapt section's (built last) too
        self.placement = replace(self.placement, sources=self.locator_sources())
        self._check_exact()
        self._check_faithfulness()
        self._check_placement()

    def _inherited(self, section: str, given: dict[str, Any]) -> dict[str, Any]:
        """The defaults a section takes from one built before it: the adapt section's from the
        placement section (:data:`ADAPT_FROM_PLACEMENT`; alpha only with the curve's rank, so a
        rank given alone keeps alpha = 2 x rank)."""
        if section != "adapt":
            return {}
        keys = [k for k in ADAPT_FROM_PLACEMENT if k != "alpha" or "rank" not in given]
        return {k: getattr(self.placement, k) for k in keys}

    def _check_placement(self) -> None:
        """An arm that reads the placement curve needs its stage."""
        from sumcircuit.study.arms import ARMS

        reading = [a for a in self.lora.arms if RunLayout.PLACEMENT in ARMS[a].reads]
        if reading and not self.placement.enabled:
            raise ConfigError(
                "arms",
                f"{{key}} holds {reading[0]}, which reads the placement curve; set "
                "placement.enabled: true (or use --preset placement)",
                "lora.arms",
            )
        for name in self.placement.locators:
            spec = locator(name)
            if spec.source in ("diff", "none") or spec.name in self.placement.sources:
                continue
            if spec.source == "adapt":
                hint = f"set adapt.enabled: true with adapt.parts holding {part_of(spec.name)}"
            elif spec.source == "exact":
                hint = "set exact.limit above 0"
            else:
                hint = f"add its method to attribute.methods (stage {spec.stage})"
            raise ConfigError(
                "locators",
                f"{{key}} names {name}, whose scores no stage of this study computes; {hint}, "
                "or drop it",
                "placement.locators",
            )

    def _check_faithfulness(self) -> None:
        """What faithfulness and locate must agree on, which their own configs cannot see."""
        faith = self.faithfulness
        if faith.control_sizes and faith.sizes:
            missing = sorted(set(faith.control_sizes) - set(faith.sizes))
            if missing:
                raise ConfigError(
                    "control_sizes",
                    f"{{key}} holds {missing[0]}, which is not among faithfulness.sizes "
                    f"{faith.sizes}: random sets are drawn only at the curve's sizes; set "
                    "faithfulness.control_sizes to some of them, or [] for every size",
                    "faithfulness.control_sizes",
                )
        if self.locate.score == FAITHFUL_SCORE and self.locate.level != faith.level:
            raise ConfigError(
                "level",
                f"{{key}}={self.locate.level} differs from faithfulness.level={faith.level}: "
                "locate.score faithful picks the circuit from the faithfulness curves; set both "
                "to the same level",
                "locate.level",
            )

    def _check_exact(self) -> None:
        """The exact scan reads selection documents only, and its rows are layers."""
        limit, selection = self.exact.limit, self.diff.limit
        if selection is not None and limit > selection:
            raise ConfigError(
                "limit",
                f"{{key}}={limit} exceeds diff.limit={selection}: the scan reads the first "
                "selection documents only",
                "exact.limit",
            )
        if self.exact.enabled and self.faithfulness.level != "layer":
            raise ConfigError(
                "limit",
                "{key} > 0 needs faithfulness.level=layer: the study's exact scan is a layer scan",
                "exact.limit",
            )

    def _managed(self, section: str) -> dict[str, Any]:
        """What the study sets in a section: models, data, lengths, and the stages it reads (by
        their run-relative folder, which the runner makes absolute and derives its inputs from)."""
        L = RunLayout
        common = {"data": self.data, "max_length": self.max_length, "template": self.template}
        train = common | {"model": self.model, "seed": self.seeds[0], "out": section}
        train |= {"resume": True, "overwrite": True}
        if section == "placement":  # its locators read the study's stages; it avoids the test split
            return common | {
                "model": self.model,
                "seed": self.seeds[0],
                "out": section,
                "diff": L.DIFF,
                "sources": self.locator_sources("circuit"),  # + the adapt stage's, set below
                "reserved_splits": [self.evaluate.split],
            }
        if section == "adapt":  # the base model and the train split only
            return common | {"model": self.model, "seed": self.seeds[0], "split": "train"}
        finetuned = self.finetuned or L.FINETUNE  # external, or the finetune stage's folder
        pair = common | {"base": self.model, "finetuned": finetuned, "seed": self.seeds[0]}
        selection = (
            {"split": self.diff.split, "limit": self.diff.limit}
            if section
            in (
                "attribute",
                "exact",
            )
            else {}
        )
        sources = (  # faithfulness draws an adaptation locator only when named (README)
            {"diff": L.DIFF, "sources": self.locator_sources("circuit")}
            if section
            in (
                "faithfulness",
                "locate",
            )
            else {}
        )
        return {
            "finetune": train | {"method": "full"},
            "diff": pair | {"per_doc": True},
            # attribution and the exact scan read the diff's selection documents; the scan
            # the first of them (its own limit), layer by layer
            "attribute": pair | selection,
            "exact": pair | {"split": selection.get("split"), "level": "layer"},
            "faithfulness": pair | sources,
            "locate": sources | {"faithfulness": L.FAITHFULNESS},
            "validate": pair | {"circuit": L.LOCATE},
            "lora": train | {"method": "lora"},
            "evaluate": common | {"model": self.model},
        }[section]

    def locator_sources(self, purpose: str | None = None) -> dict[str, str]:
        """Every registered locator (of ``purpose``, or any) whose source a stage of this study
        produces (the diff's locators read ``diff``), by the folder of that stage: the attribution
        methods, the exact scan and, when enabled, the adapt stage's scores of its ``parts``."""
        planned = [*self.attribute.folders, *([RunLayout.EXACT] * self.exact.enabled)]
        if purpose != "circuit" and self.adapt.enabled:  # (no circuit locator reads it)
            planned.append(RunLayout.ADAPT)
        return {
            name: LOCATORS[name].stage  # type: ignore[misc]
            for name in names(purpose=purpose)
            if LOCATORS[name].stage in planned
            and (LOCATORS[name].source != "adapt" or part_of(name) in self.adapt.parts)
        }

    @staticmethod
    def section_dict(section: str, config: DictConfig) -> dict[str, Any]:
        """The settable options of a section's config, resolved (as a YAML section)."""
        keys = section_keys(section)
        return {k: v for k, v in config.to_dict().items() if k in keys}

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as a YAML would give it: top level and each section's options."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECTIONS}
        data["seeds"] = list(self.seeds)
        return data | {name: self.section_dict(name, getattr(self, name)) for name in SECTIONS}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A study YAML file as a mapping (duplicate keys and alias bombs refused: see
    :mod:`sumcircuit.study.yaml_reader`)."""
    path = Path(path)
    where = f"config file {str(path)!r}"
    if not path.exists():
        raise SumcircuitError(f"{where} does not exist")
    if not path.is_file():
        raise SumcircuitError(f"{where} is not a file; give the path of a study YAML")
    raw = path.read_bytes()
    if len(raw) > MAX_BYTES:
        raise SumcircuitError(
            f"{where} is over {MAX_BYTES >> 20} MiB; a study config is a short YAML file"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SumcircuitError(
            f"{where} is not UTF-8 text (byte {err.start + 1} is not); give a study YAML file"
        ) from None
    data = load_yaml(text, where) or {}
    if not isinstance(data, dict):
        raise SumcircuitError(f"{where} must be a mapping of options at the top level")
    return data


def parse_override(text: str) -> dict[str, Any]:
    """``section.key=value`` (or ``key=value``) into a nested dict; the value is parsed as YAML."""
    if "=" not in text:
        raise SumcircuitError(
            f"--set {text!r} must look like section.key=value, e.g. lora.epochs=2"
        )
    key, raw = text.split("=", 1)
    value = load_yaml(raw, f"the value of --set {text!r}") if raw else None
    parts = key.strip().split(".")
    if len(parts) == 1:
        return {parts[0]: value}
    if len(parts) == 2:
        return {parts[0]: {parts[1]: value}}
    raise SumcircuitError(f"--set {text!r}: use at most one dot (section.key=value)")


def _renamed(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` with sections of earlier releases under their new names (one warning each)."""
    for old, new in RENAMED_SECTIONS.items():
        if old in data:
            log.warning(
                "%s: section %r is now %r; the old name goes in a later release", where, old, new
            )
            data = {k: v for k, v in data.items() if k != old} | {
                new: {**(data[old] or {}), **(data.get(new) or {})}
            }
    return data


def build_config(
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    default_preset: str | None = None,
) -> StudyConfig:
    """CLI flags (``overrides``, ``sets``) > YAML file > preset > defaults.

    ``default_preset`` is the preset used when neither ``preset`` nor the YAML file names one
    (``sumcircuit run`` passes :data:`DEFAULT_PRESET`)."""
    data: dict[str, Any] = {}
    file_data: dict[str, Any] | None = None
    if config_file is not None:
        file_data = _renamed(read_yaml(config_file), f"config file {str(config_file)!r}")
        reject_unknown_keys(file_data, StudyConfig, f"config file {str(config_file)!r}")
        if preset is None:
            preset = file_data.get("preset") or default_preset
    elif preset is None:
        preset = default_preset
    if preset is not None:
        if not isinstance(preset, str) or preset not in PRESETS:
            raise SumcircuitError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        data = _merge(data, PRESETS[preset]) | {"preset": preset}
    if file_data is not None:
        data = _merge(data, file_data)
    for text in sets or []:
        override = _renamed(parse_override(text), f"--set {text!r}")
        reject_unknown_keys(override, StudyConfig, f"--set {text!r}")
        data = _merge(data, override)
    data = _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    reject_unknown_keys(data, StudyConfig, "the study config")
    return StudyConfig(**data)
