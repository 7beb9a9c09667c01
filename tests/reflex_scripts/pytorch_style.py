"""A PyTorch user's script, run unchanged by tests/test_reflexes.py.

An optimizer object made from ``model.parameters()``, ``fit(X, y)`` on plain arrays, a
callback of the user's own, and a cosine learning rate stepped every batch.  Prints one
JSON line with what the test checks.
"""
import json
import math

import numpy as np

from symdl.data import load_digits
from symdl.nn import Activation, Dense, Sequential
from symdl.optim import SGD
from symdl.optim.schedules import cosine_lr
from symdl.train import Trainer
from symdl.train.callbacks import Callback

train, test = load_digits("train"), load_digits("test")
X, y = train.X.astype(np.float64), train.y  # float64 arrays, as NumPy makes them
rng = np.random.default_rng(0)
model = Sequential(Dense(64, 32, rng), Activation("relu"), Dense(32, 10, rng))
optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)


class Recorder(Callback):
    """Counts hooks and records the learning rate each step ran with."""

    def __init__(self):
        self.calls = {"train_begin": 0, "epoch_end": 0, "batch_end": 0, "train_end": 0}
        self.lrs, self.losses = [], []

    def on_train_begin(self, logs=None):
        self.calls["train_begin"] += 1

    def on_batch_begin(self, step, logs=None):
        self.lrs.append(self.trainer.optimizer.hyper["lr"])

    def on_batch_end(self, step, logs=None):
        self.calls["batch_end"] += 1

    def on_epoch_end(self, epoch, logs=None):
        self.calls["epoch_end"] += 1
        self.losses.append(logs["loss"])

    def on_train_end(self, logs=None):
        self.calls["train_end"] += 1


epochs, batch_size = 6, 64
steps = epochs * math.ceil(len(X) / batch_size)
recorder = Recorder()
trainer = Trainer(model, optimizer, batch_size=batch_size, epochs=epochs,
                  schedule=cosine_lr(0.1, T_max=steps), schedule_unit="batch",
                  callbacks=[recorder], verbose=0)
history = trainer.fit(X, y)
accuracy = float((trainer.predict(test.X).argmax(axis=1) == test.y).mean())
print(json.dumps({"accuracy": accuracy, "calls": recorder.calls, "lrs": recorder.lrs,
                  "steps": steps, "optimizer_steps": optimizer.t,
                  "same_optimizer": trainer.optimizer is optimizer,
                  "epoch_losses": recorder.losses, "history_losses": history.train_loss}))
