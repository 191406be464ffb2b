"""The fine-tuning stage's config in and result out (both JSON round-trippable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sumcircuit.configs import DictConfig
from sumcircuit.errors import SumcircuitError
from sumcircuit.io import config_hash

Method = Literal["full", "lora"]
TARGETS = ("q", "k", "v", "o", "mlp")
DEFAULT_LR = {"full": 3e-5, "lora": 2e-4}
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
