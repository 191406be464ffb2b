"""The fine-tuning stage's config in and result out (both JSON round-trippable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sumcircuit.configs import check_at_least, check_fraction
from sumcircuit.data.options import DataOptions
from sumcircuit.errors import ConfigError, SumcircuitError
from sumcircuit.io import config_hash

Method = Literal["full", "lora"]
TARGETS = ("q", "k", "v", "o", "mlp")
DEFAULT_LR = {"full": 3e-5, "lora": 2e-4}
# Fields that steer how a run executes but not what it computes: left out of the config hash.
_EXECUTION_FIELDS = (
    "out",
    "resume",
    "overwrite",
    "checkpoint_every",
    "max_steps",
    "progress",
    "val_cache",
)


def _distinct(items: list, name: str) -> list:
    """``items`` sorted; a repeated item is an error naming it (no silent de-duplication)."""
    seen: set = set()
    twice = [x for x in items if x in seen or seen.add(x)]
    if twice:
        shown = ".".join(map(str, twice[0])) if isinstance(twice[0], tuple) else twice[0]
        raise ConfigError(name, f"{{key}} names {shown} more than once; give each {name[:-1]} once")
    if not items:
        raise ConfigError(name, f"{{key}} is empty; name at least one {name[:-1]}")
    return sorted(items)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class FinetuneConfig(DataOptions):
    """Everything that defines one fine-tuning run: the training data (train split; the
    validation split for the checks during training) and how to train."""

    model: str = field(default="smollm2-135m", metadata=_help("preset, local dir or HF id"))
    out: str = field(default="", metadata=_help("output directory"))
    method: Method = field(default="lora", metadata=_help("full fine-tuning or LoRA adapters"))
    layers: list[int] | None = field(
        default=None, metadata=_help("LoRA on these layers only, e.g. 2,3,5 (default: all layers)")
    )
    heads: list[tuple[int, int]] | None = field(
        default=None, metadata=_help("LoRA on these heads only, LAYER.HEAD pairs: 2.1,3.4")
    )
    circuit: str | None = field(
        default=None, metadata=_help("circuit JSON: adapt its layers (or heads, head-level)")
    )
    rank: int = field(default=8, metadata=_help("LoRA rank"))
    layer_ranks: dict[int, int] | None = field(
        default=None,
        metadata={
            "help": "LoRA rank of chosen layers, LAYER=RANK pairs: 2=44,5=44 (the other adapted "
            "layers keep --rank; alpha/rank stays fixed)",
            "metavar": "LAYER=RANK,...",
        },
    )
    alpha: float | None = field(default=None, metadata=_help("LoRA alpha (default 2*rank)"))
    lora_dropout: float = field(default=0.0, metadata=_help("dropout on the LoRA input"))
    targets: tuple[str, ...] = field(
        default=("q", "k", "v", "o"), metadata=_help("adapted projections, from q,k,v,o,mlp")
    )
    equal_budget: bool = field(
        default=False,
        metadata=_help("raise the rank so trainable params match LoRA on all layers"),
    )
    epochs: int = field(default=1, metadata=_help("passes over the training set"))
    grad_accum: int = field(default=1, metadata=_help("micro-batches per optimizer step"))
    lr: float | None = field(
        default=None, metadata=_help("peak learning rate (default: 3e-5 full, 2e-4 lora)")
    )
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
    val_limit: int = field(default=32, metadata=_help("validation docs for per-epoch loss"))
    rouge_every_epoch: int = field(
        default=0,
        metadata=_help("generate for N validation docs at each epoch end and eval point (0 = off)"),
    )
    eval_points: int = field(
        default=4,
        metadata=_help(
            "evaluate validation loss (and ROUGE-L when rouge_every_epoch) at N evenly spaced "
            "optimizer steps over the whole run; 0 = only at epoch ends"
        ),
    )
    val_cache: str | None = field(
        default=None,
        metadata=_help(
            "directory where runs share the validation loss before training (the base model's: "
            "adapters start at zero), keyed by model weights, documents and precision"
        ),
    )
    checkpoint_every: int = field(
        default=0, metadata=_help("checkpoint every N optimizer steps (0: each epoch only)")
    )
    max_steps: int | None = field(
        default=None, metadata=_help("stop after N optimizer steps (checkpointed; resumable)")
    )
    resume: bool = field(default=False, metadata=_help("continue from the last checkpoint"))
    overwrite: bool = field(default=False, metadata=_help("replace a different run in --out"))
    progress: bool = field(default=True, metadata=_help("show a progress bar"))

    def __post_init__(self) -> None:
        super().__post_init__()  # types and choices of every field
        self.targets = tuple(self.targets)
        unknown = set(self.targets) - set(TARGETS)
        if unknown or not self.targets:
            raise ConfigError(
                "targets",
                f"{{key}} {','.join(self.targets)} is invalid; choose from {','.join(TARGETS)}",
            )
        if self.rank <= 0:
            raise ConfigError("rank", f"{{key}} must be a positive integer, got {self.rank}")
        check_fraction(self, "lora_dropout")
        if self.alpha is None:
            self.alpha = 2.0 * self.rank
        if self.lr is None:
            self.lr = DEFAULT_LR[self.method]
        if self.layers is not None:
            self.layers = _distinct(self.layers, "layers")
        if self.heads is not None:
            self.heads = _distinct(self.heads, "heads")
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
        self._check_layer_ranks()
        if self.heads is not None and "mlp" in self.targets:
            raise SumcircuitError("the MLP has no heads; drop mlp from --targets with --heads")
        check_at_least(self, ("epochs", "grad_accum", "max_steps"), 1)
        check_fraction(self, "warmup")
        if self.lr <= 0:
            raise ConfigError("lr", f"{{key}} must be positive, got {self.lr}")
        if self.alpha <= 0:
            raise ConfigError("alpha", f"{{key}} must be positive, got {self.alpha}")
        check_at_least(self, ("weight_decay", "seed"), 0)
        check_at_least(
            self, ("val_limit", "rouge_every_epoch", "eval_points", "checkpoint_every"), 0
        )

    def _check_layer_ranks(self) -> None:
        """Per-layer ranks name adapted layers (``--layers``, or any with all layers), with
        positive ranks, and are not combined with heads or an equal budget."""
        if self.layer_ranks is None:
            return
        if not self.layer_ranks:
            raise ConfigError("layer_ranks", "{key} is empty; name at least one LAYER=RANK pair")
        if self.heads is not None or self.circuit is not None or self.equal_budget:
            raise SumcircuitError(
                "--layer-ranks sets ranks per layer: combine it with --layers or all layers, "
                "not with --heads, --circuit or --equal-budget"
            )
        for layer, rank in self.layer_ranks.items():
            if layer < 0 or rank < 1:
                raise ConfigError(
                    "layer_ranks",
                    f"{{key}} needs layers from 0 and ranks from 1, got {layer}={rank}",
                )
            if self.layers is not None and layer not in self.layers:
                raise ConfigError(
                    "layer_ranks",
                    f"{{key}} names layer {layer}, which --layers does not adapt; add it to "
                    "--layers or drop it",
                )
        self.layer_ranks = dict(sorted(self.layer_ranks.items()))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = list(self.targets)
        if self.heads is not None:
            data["heads"] = [list(h) for h in self.heads]
        if self.layer_ranks is None:  # absent, as before it existed: earlier runs keep their hash
            data.pop("layer_ranks")
        return data

    def content_hash(self) -> str:
        """Hash of the fields that change what is trained (not where or how it is run)."""
        data = self.to_dict()
        for name in _EXECUTION_FIELDS:
            data.pop(name)
        return config_hash(data)
