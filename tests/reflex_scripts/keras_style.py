"""A Keras user's script, run unchanged by tests/test_reflexes.py.

``fit(x=..., y=..., validation_data=(X_val, y_val), epochs=..., batch_size=...,
callbacks=[EarlyStopping(...)], verbose=2)``: one line per epoch on stdout.  A second
callback marks each epoch's end on stderr, so that a test reading both through one pipe
sees whether each epoch line came out when its epoch ended.
"""
import json
import sys

import numpy as np

from symdl.data import load_digits
from symdl.nn import Activation, Dense, Sequential
from symdl.optim import SGD
from symdl.train import Trainer
from symdl.train.callbacks import EarlyStopping, LambdaCallback

data, test = load_digits("train"), load_digits("test")
x_train, y_train = data.X[:1200], data.y[:1200]
x_val, y_val = data.X[1200:], data.y[1200:]
rng = np.random.default_rng(1)
model = Sequential(Dense(64, 64, rng), Activation("relu"), Dense(64, 10, rng))
trainer = Trainer(model, SGD(model.parameters(), lr=0.2, momentum=0.9))
marker = LambdaCallback(on_epoch_end=lambda epoch, logs: print(f"[end of epoch {epoch + 1}]",
                                                                 file=sys.stderr, flush=True))
history = trainer.fit(x=x_train, y=y_train, validation_data=(x_val, y_val), epochs=200,
                      batch_size=32, callbacks=[EarlyStopping(monitor="val_loss", patience=3),
                                                marker], verbose=2)
test_loss, test_accuracy = trainer.evaluate((test.X, test.y))
best = int(np.argmin(history.val_loss))
print(json.dumps({"epochs": history.epochs, "test_accuracy": test_accuracy,
                  "best_epoch": best + 1, "val_loss": history.val_loss,
                  "restored_val_loss": trainer.evaluate((x_val, y_val))[0]}))
