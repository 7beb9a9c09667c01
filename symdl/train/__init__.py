"""Training: the trainer, its history and progress display."""
from .trainer import History, Trainer, build_training_graph, first_nonfinite

__all__ = ["Trainer", "History", "build_training_graph", "first_nonfinite"]
