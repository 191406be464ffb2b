"""Fine-tuning: full, LoRA on chosen layers or heads, resumable, on 1 or N processes."""

from sumcircuit.models.trained import EpochRecord, TrainingResult, load_trained
from sumcircuit.training.config import FinetuneConfig
from sumcircuit.training.loop import finetune

__all__ = ["EpochRecord", "FinetuneConfig", "TrainingResult", "finetune", "load_trained"]
