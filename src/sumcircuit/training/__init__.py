"""Fine-tuning: full, LoRA on chosen layers or heads, resumable, on 1 or N processes."""

from sumcircuit.models.trained import load_trained
from sumcircuit.training.config import EpochRecord, FinetuneConfig, TrainingResult
from sumcircuit.training.loop import finetune

__all__ = ["EpochRecord", "FinetuneConfig", "TrainingResult", "finetune", "load_trained"]
