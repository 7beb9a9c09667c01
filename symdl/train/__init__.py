"""Training: the trainer, its history, checkpoints and the step guard."""
from .graphs import build_training_graph
from .guard import first_nonfinite
from .trainer import History, Trainer

__all__ = ["Trainer", "History", "build_training_graph", "first_nonfinite"]
