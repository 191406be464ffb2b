"""The fine-tuning stage's config in and result out (both JSON round-trippable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

import pandas as pd

from sumcircuit.configs import DictConfig
from sumcircuit.errors import SumcircuitError, reject_unknown_keys
from sumcircuit.io import config_hash
from sumcircuit.results import StageResult

Method = Literal["full", "lora"]
TARGETS = ("q", "k", "v", "o", "mlp")
DEFAULT_LR = {"full": 3e-5, "lora": 2e-4}
RESULT_FILE = "training.json"
# Fields that steer how a run executes but not what it computes: left out of the config hash.
_EXECUTION_FIELDS = ("out", "resume", "overwrite", "checkpoint_every", "max_steps", "progress")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class FinetuneConfig(DictConfig):
    """Everything that defines one fine-tuning run."""

    model: str = field(default="smollm2-135m", metadata=_help("preset, local dir or HF id"))
    data: str = field(default="xsum", metadata=_help("dataset name, file or hf:NAME"))
    out: str = field(default="", metadata=_help("output directory"))
    method: Method = field(default="lora", metadata=_help("full | lora"))
    layers: list[int] | None = field(
        default=None, metadata=_help("LoRA on these layers only (default: all layers)")
    )
    heads: list[tuple[int, int]] | None = field(
        default=None, metadata=_help("LoRA restricted to these (layer, head) pairs")
    )
    circuit: str | None = field(
        default=None, metadata=_help("circuit JSON: adapt its layers (or heads, head-level)")
    )
    rank: int = field(default=8, metadata=_help("LoRA rank"))
    alpha: float | None = field(default=None, metadata=_help("LoRA alpha (default 2*rank)"))
    lora_dropout: float = field(default=0.0, metadata=_help("dropout on the LoRA input"))
    targets: tuple[str, ...] = field(
        default=("q", "k", "v", "o"), metadata=_help("adapted projections ⊆ q,k,v,o,mlp")
    )
    equal_budget: bool = field(
        default=False,
        metadata=_help("raise the rank so trainable params match LoRA on all layers"),
    )
    epochs: int = field(default=1, metadata=_help("passes over the training set"))
    limit: int | None = field(default=None, metadata=_help("first N training examples"))
    max_length: int = field(default=512, metadata=_help("tokens per example (document cut)"))
    batch_size: int = field(default=4, metadata=_help("examples per micro-batch per process"))
    grad_accum: int = field(default=1, metadata=_help("micro-batches per optimizer step"))
    lr: float | None = field(default=None, metadata=_help("peak learning rate (per method)"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW decoupled weight decay"))
    warmup: float = field(default=0.06, metadata=_help("fraction of steps in linear warmup"))
    schedule: Literal["linear", "cosine"] = field(
        default="linear", metadata=_help("decay after warmup: linear | cosine (to 0)")
    )
    precision: Literal["auto", "bf16", "fp32"] = field(
        default="auto",
        metadata=_help("matmul autocast: auto = bf16 where the hardware is fast at it, else fp32"),
    )
    seed: int = field(default=0, metadata=_help("seed of adapter init, data order, dropout"))
    template: Literal["plain", "chat"] = field(default="plain", metadata=_help("prompt template"))
    val_limit: int = field(default=32, metadata=_help("validation docs for per-epoch loss"))
    rouge_every_epoch: int = field(
        default=0, metadata=_help("generate for N validation docs each epoch (0 = off)")
    )
    checkpoint_every: int = field(
        default=0, metadata=_help("checkpoint every N optimizer steps (0: each epoch only)")
    )
    max_steps: int | None = field(
        default=None, metadata=_help("stop after N optimizer steps (checkpointed; resumable)")
    )
    resume: bool = field(default=False, metadata=_help("continue from the last checkpoint"))
    overwrite: bool = field(default=False, metadata=_help("replace a different run in out"))
    progress: bool = field(default=True, metadata=_help("show a progress bar"))

    def __post_init__(self) -> None:
        if self.method not in ("full", "lora"):
            raise SumcircuitError(f"--method must be 'full' or 'lora', got {self.method!r}")
        self.targets = tuple(self.targets)
        unknown = set(self.targets) - set(TARGETS)
        if unknown or not self.targets:
            raise SumcircuitError(
                f"--targets {','.join(self.targets)} is invalid; choose from {','.join(TARGETS)}"
            )
        if self.rank <= 0:
            raise SumcircuitError(f"--rank must be a positive integer, got {self.rank}")
        if self.alpha is None:
            self.alpha = 2.0 * self.rank
        if self.lr is None:
            self.lr = DEFAULT_LR[self.method]
        if self.layers is not None:
            self.layers = sorted({int(layer) for layer in self.layers})
        if self.heads is not None:
            self.heads = sorted({(int(layer), int(head)) for layer, head in self.heads})
        selectors = [s for s in (self.layers, self.heads, self.circuit) if s is not None]
        if len(selectors) > 1:
            raise SumcircuitError("give at most one of --layers, --heads and --circuit")
        if self.method == "full" and (selectors or self.equal_budget):
            raise SumcircuitError(
                "--layers/--heads/--circuit/--equal-budget select LoRA adapters; use --method lora"
            )
        if self.equal_budget and not selectors:
            raise SumcircuitError(
                "--equal-budget needs a targeted run: add --layers, --heads or --circuit"
            )
        if self.heads is not None and "mlp" in self.targets:
            raise SumcircuitError("the MLP has no heads; drop mlp from --targets with --heads")
        for name in ("epochs", "max_length", "batch_size", "grad_accum"):
            if getattr(self, name) <= 0:
                raise SumcircuitError(f"--{name.replace('_', '-')} must be positive")
        if not 0.0 <= self.warmup < 1.0:
            raise SumcircuitError(f"--warmup is a fraction of steps in [0, 1), got {self.warmup}")
        if self.lr <= 0:
            raise SumcircuitError(f"--lr must be positive, got {self.lr}")
        if self.schedule not in ("linear", "cosine"):
            raise SumcircuitError(f"--schedule must be linear or cosine, got {self.schedule!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise SumcircuitError(f"--precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.val_limit < 0 or self.rouge_every_epoch < 0 or self.checkpoint_every < 0:
            raise SumcircuitError("--val-limit, --rouge-every-epoch, --checkpoint-every: >= 0")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = list(self.targets)
        if self.heads is not None:
            data["heads"] = [list(h) for h in self.heads]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        data = dict(data)
        if data.get("heads") is not None:
            data["heads"] = [tuple(h) for h in data["heads"]]
        return super().from_dict(data)

    def content_hash(self) -> str:
        """Hash of the fields that change what is trained (not where or how it is run)."""
        data = self.to_dict()
        for name in _EXECUTION_FIELDS:
            data.pop(name)
        return config_hash(data)


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float  # mean summary-token CE over the epoch's tokens
    val_loss: float | None  # summary-token CE over val_limit validation docs
    wall_s: float
    tokens_per_s: float  # real (non-pad) input tokens trained on per second, all processes
    val_rougeL: float | None = None


@dataclass
class TrainingResult(StageResult):
    """What ``finetune`` wrote to ``out/training.json``."""

    FILE: ClassVar[str] = RESULT_FILE
    STAGE: ClassVar[str] = "finetune"

    trainable_params: int  # entries that can change (masked LoRA entries excluded)
    total_params: int  # base model parameters + trainable adapter entries
    epochs: list[EpochRecord]
    wall_s: float
    config: dict[str, Any]
    config_hash: str
    provenance: dict[str, Any]
    adapted_modules: list[str] = field(default_factory=list)
    rank: int | None = None  # effective LoRA rank (raised by --equal-budget)
    budget: dict[str, Any] = field(default_factory=dict)  # equal-budget counts, when used
    step_losses: list[float] = field(default_factory=list)  # per optimizer step, global mean
    complete: bool = True  # False when stopped by max_steps (a checkpoint is kept)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingResult:
        data = dict(data)
        for epoch in data["epochs"]:
            reject_unknown_keys(epoch, EpochRecord, "an epoch record of the TrainingResult")
        data["epochs"] = [EpochRecord(**e) for e in data["epochs"]]
        return super().from_dict(data)

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch (the ``EpochRecord`` fields)."""
        return pd.DataFrame(
            [asdict(e) for e in self.epochs], columns=[f.name for f in fields(EpochRecord)]
        )

    def history(self) -> list[dict[str, Any]]:
        """The epochs as plain dicts, oldest first."""
        return [asdict(e) for e in self.epochs]
