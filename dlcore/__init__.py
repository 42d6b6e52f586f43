"""dlcore: deep learning the JAX way.

Flax NNX modules and pure functions for the models and losses of five PyTorch books, pure jitted
training steps, Optax optimizers with PyTorch semantics, and the books' worked examples.
"""

from dlcore import checkpoint, cluster, data, decode, inspect, losses, metrics, models, nn, optim, plot, schedules, train, transfer, weights
from dlcore.checkpoint import CheckpointError
from dlcore.train import Checkpoint, CSVLogger, EarlyStopping, TensorBoard, Trainer, TrainState

__version__ = "0.1.0"

__all__ = ["CSVLogger", "Checkpoint", "CheckpointError", "EarlyStopping", "TensorBoard", "TrainState", "Trainer", "checkpoint", "cluster", "data", "decode",
           "inspect", "losses", "metrics", "models", "nn", "optim", "plot", "schedules", "train", "transfer", "weights"]
