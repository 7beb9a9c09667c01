"""Training: the trainer, its history, callbacks, checkpoints and the step guard."""
from .callbacks import Callback, EarlyStopping, LambdaCallback, ModelCheckpoint, TerminateOnNaN
from .graphs import build_training_graph
from .guard import first_nonfinite
from .trainer import History, Trainer

__all__ = ["Trainer", "History", "build_training_graph", "first_nonfinite", "Callback",
           "EarlyStopping", "LambdaCallback", "ModelCheckpoint", "TerminateOnNaN"]
