"""Adaptation scores: where a low-rank update of the base model can lower the task loss."""
