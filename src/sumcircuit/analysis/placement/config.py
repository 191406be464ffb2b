"""The placement curve's config: which locators, which sizes, how each LoRA run trains, and
which documents train, rank and score (:mod:`.documents` checks they are disjoint)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sumcircuit.analysis.locate.registry import LOCATORS, locator, names, sources_field
from sumcircuit.configs import check_at_least
from sumcircuit.data.options import DataOptions
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.training.config import TARGETS, FinetuneConfig

__all__ = ["PlacementConfig"]


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class PlacementConfig(DataOptions):
    """A placement curve. ``limit`` (of :class:`DataOptions`) is the number of training pairs:
    the first ``limit`` of the train split train every run."""

    model: str = field(default="smollm2-135m", metadata=_help("base model: preset, dir or HF id"))
    limit: int | None = field(
        default=64, metadata=_help("training pairs of every run: the first N of the train split")
    )
    diff: str | None = field(
        default=None, metadata=_help("diff directory: the kl, js, entropy, weight, actmag locators")
    )
    sources: dict[str, str] = sources_field()
    locators: list[str] = field(
        default_factory=list,
        metadata=_help(
            "layer locators to place LoRA by (default: every one the diff and --sources give, "
            "and the position baselines)"
        ),
    )
    sizes: list[int] = field(
        default_factory=lambda: [1, 3, 8], metadata=_help("numbers of adapted layers k")
    )
    random_sets: int = field(
        default=5, metadata=_help("distinct random k-layer sets per size (the band; at least 5)")
    )
    single_layer: bool = field(
        default=False,
        metadata=_help(
            "also train every layer alone: the ground truth locators are scored against"
        ),
    )
    matched: bool = field(
        default=False,
        metadata=_help(
            "also train every top-k and random set at the rank that matches standard LoRA's "
            "trainable parameters (rank x layers / k)"
        ),
    )
    rank: int = field(default=8, metadata=_help("LoRA rank of every run"))
    alpha: float | None = field(default=None, metadata=_help("LoRA alpha (default 2*rank)"))
    targets: tuple[str, ...] = field(
        default=("q", "k", "v", "o"), metadata=_help("adapted projections, from q,k,v,o,mlp")
    )
    epochs: int = field(default=1, metadata=_help("passes over the training pairs, every run"))
    lr: float = field(default=1e-3, metadata=_help("peak learning rate of every run"))
    seed: int = field(
        default=0,
        metadata=_help(
            "seed of every run (adapter init, data order), the random sets and the bootstrap"
        ),
    )
    eval_split: str = field(
        default="validation", metadata=_help("split the outcome documents come from")
    )
    eval_offset: int | None = field(
        default=None,
        metadata=_help(
            "first outcome document's position in --eval-split (default: just past the documents "
            "any locator or the training read there)"
        ),
    )
    eval_limit: int | None = field(
        default=32, metadata=_help("outcome documents (default 32; none: the rest of the split)")
    )
    reserved_splits: list[str] = field(
        default_factory=lambda: ["test"],
        metadata=_help(
            "splits that judge models elsewhere (the study's test documents): no outcome "
            "document may come from them"
        ),
    )
    n_boot: int = field(default=2000, metadata=_help("bootstrap resamples for the CIs"))
    out: str = field(default="", metadata=_help("output directory (runs, placement.json, figure)"))
    progress: bool = field(default=True, metadata=_help("show progress bars"))

    def __post_init__(self) -> None:
        super().__post_init__()  # types and choices of every field
        if not self.sizes:
            raise ConfigError("sizes", "{key} is empty; give at least one k, e.g. 1,3,8")
        self.sizes = sorted(set(self.sizes))
        check_at_least(self, ("random_sets",), 1)
        check_at_least(self, ("eval_offset", "eval_limit", "n_boot"), 0)
        check_at_least(self, ("eval_limit", "n_boot"), 1)
        if self.lr <= 0:
            raise ConfigError("lr", f"{{key}} must be positive, got {self.lr}")
        unknown = set(self.targets) - set(TARGETS)
        if unknown or not self.targets:
            raise ConfigError(
                "targets",
                f"{{key}} {','.join(self.targets)} is invalid; choose from {','.join(TARGETS)}",
            )
        self.targets = tuple(self.targets)
        for name in [*self.sources, *self.locators]:
            spec = locator(name)  # an unknown name: one sentence listing the valid ones
            if "layer" not in spec.levels:
                raise SumcircuitError(
                    f"the {name} locator ranks no layers, and LoRA is placed on layers; drop it"
                )
        if self.alpha is None:
            self.alpha = 2.0 * self.rank
        if self.eval_split in self.reserved_splits:
            raise ConfigError(
                "eval_split",
                f"{{key}} {self.eval_split!r} is reserved for judging models "
                f"(--reserved-splits {','.join(self.reserved_splits)}); score the curve on "
                "another split, e.g. validation",
            )

    def wanted(self) -> list[str]:
        """The locators on the curve: ``locators``, or every one the sources give (the diff's,
        then each source's, in registry order) and the position baselines."""
        if self.locators:
            return list(dict.fromkeys(self.locators))
        return [
            name
            for name in names()
            if "layer" in LOCATORS[name].levels
            and (
                (LOCATORS[name].source == "diff" and self.diff)
                or name in self.sources
                or LOCATORS[name].source == "none"
            )
        ]

    def source_of(self, name: str) -> str | None:
        """The directory locator ``name`` reads: the diff, its ``sources`` entry, or none."""
        spec = locator(name)
        if spec.source == "none":
            return None
        directory = self.diff if spec.source == "diff" else self.sources.get(name)
        if directory is None:
            given = ["diff"] * bool(self.diff) + list(self.sources)
            flag = "--diff DIR" if spec.source == "diff" else f"--sources {name}=DIR"
            raise SumcircuitError(
                f"no source gives the locator {name}; pass {flag} (given: "
                f"{', '.join(given) or 'none'})"
            )
        return directory

    def training(self, layers: list[int] | None, rank: int, out: str) -> FinetuneConfig:
        """The fine-tuning config of one run: LoRA on ``layers`` (None: every layer) at
        ``rank``, alpha/rank fixed, everything else the same for every run. No validation
        during training: the outcome is scored afterwards, on the outcome documents."""
        data = {
            k: getattr(self, k)
            for k in (
                "data",
                "document_field",
                "summary_field",
                "limit",
                "max_length",
                "template",
                "batch_size",
                "targets",
                "epochs",
                "lr",
                "seed",
                "progress",
            )
        }
        return FinetuneConfig(
            **data,
            model=self.model,
            method="lora",
            layers=layers,
            rank=rank,
            alpha=self.alpha * rank / self.rank,
            val_limit=0,
            eval_points=0,
            out=out,
            resume=True,
            overwrite=True,
        )

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["targets"] = list(self.targets)
        return data
