"""The ``adapt`` stage's config: the base model, the training pairs, and the LoRA arm whose
placement is scored (rank, targets, learning rate: the fields, defaults and help of
:class:`~sumcircuit.training.config.FinetuneConfig`, so both say the same)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from sumcircuit.analysis.adapt.result import PARTS
from sumcircuit.configs import check_at_least
from sumcircuit.data.options import SplitDataOptions
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.training.config import DEFAULT_LR, FinetuneConfig

TRAIN = "train"
_ARM = {f.name: f for f in fields(FinetuneConfig)}


def _as_arm(name: str) -> Any:
    """A field with the default and help of the LoRA arm's field ``name``."""
    return field(default=_ARM[name].default, metadata=_ARM[name].metadata)


@dataclass(kw_only=True)
class AdaptConfig(SplitDataOptions):
    """Where a low-rank update of ``model`` can lower the summary loss, from the train split."""

    model: str = field(
        default="smollm2-135m",
        metadata={"help": "base model: preset, dir or HF id (no fine-tune is read)"},
    )
    split: str = field(
        default=TRAIN, metadata={"help": "split to read: train only (never a scoring split)"}
    )
    limit: int | None = field(
        default=32,
        metadata={
            "help": "training pairs of the gradient pass: the first N of the train split, read "
            "in batches of --batch-size"
        },
    )
    parts: list[str] = field(
        default_factory=lambda: list(PARTS),
        metadata={
            "help": "scores to compute: gradients (rgn, fisher, grad-energy), probe (probe-norm, "
            "probe-act), spectrum (spectrum-snr)"
        },
    )
    rank: int = _as_arm("rank")
    alpha: float | None = _as_arm("alpha")
    targets: tuple[str, ...] = _as_arm("targets")
    lr: float | None = field(
        default=None,
        metadata={
            "help": f"peak learning rate of the probe (default: LoRA's, {DEFAULT_LR['lora']})"
        },
    )
    probe_steps: int = field(
        default=16,
        metadata={
            "help": "optimizer steps of the all-layer LoRA probe, each on --batch-size new "
            "train pairs (the first probe_steps x batch_size of the split)"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of the probe's adapter init and order"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: auto)"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        super().__post_init__()  # types, choices and the data options
        if self.split != TRAIN:
            raise SumcircuitError(
                f"adapt reads the train split only, not {self.split!r}: its scores choose where "
                "to train, so the validation and test documents stay unseen for scoring; drop "
                "--split"
            )
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown or not self.parts or len(set(self.parts)) < len(self.parts):
            raise ConfigError(
                "parts",
                f"{{key}} {','.join(self.parts) or '(empty)'} is invalid; name each of "
                f"{', '.join(PARTS)} at most once",
            )
        check_at_least(self, ("probe_steps",), 1)
        check_at_least(self, ("seed",), 0)
        arm = self.probe_config("")  # the arm's own checks of rank, alpha, targets, lr
        self.targets, self.alpha, self.lr = arm.targets, arm.alpha, arm.lr

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["targets"] = list(self.targets)  # as JSON and YAML give it back
        return data

    @property
    def probe_pairs(self) -> int:
        """Training pairs the probe reads: one new batch per step."""
        return self.probe_steps * self.batch_size

    def probe_config(self, out: str) -> FinetuneConfig:
        """The probe as a LoRA run on every layer: the arm's rank, alpha, targets and lr, fp32,
        one epoch over :attr:`probe_pairs` train pairs, no validation (it would read another
        split), written to ``out`` (resumed there when it already finished)."""
        return FinetuneConfig(
            model=self.model,
            data=self.data,
            document_field=self.document_field,
            summary_field=self.summary_field,
            limit=self.probe_pairs,
            max_length=self.max_length,
            template=self.template,
            batch_size=self.batch_size,
            method="lora",
            rank=self.rank,
            alpha=self.alpha,
            targets=self.targets,
            lr=self.lr,
            seed=self.seed,
            precision="fp32",
            epochs=1,
            val_limit=0,
            eval_points=0,
            out=out,
            resume=True,
            overwrite=True,
            progress=self.progress,
        )
