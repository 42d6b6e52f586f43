"""dlcore: deep learning the JAX way.

Flax NNX modules and pure functions for the models and losses of five PyTorch books, pure jitted
training steps, Optax optimizers with PyTorch semantics, and the books' worked examples.
"""

from dlcore import boxes, checkpoint, data, decode, export, inspect, losses, metrics, models, nn, optim, plot, quantize, schedules, train, transfer, tune, weights
from dlcore import precision
from dlcore.checkpoint import CheckpointError
from dlcore.train import Checkpoint, CSVLogger, EarlyStopping, TensorBoard, Trainer, TrainState

__version__ = "0.1.0"


def __getattr__(name: str):
    # dlcore.cluster's estimators are scikit-learn estimators, and importing scikit-learn takes about a
    # second: it loads on first use, so `import dlcore` and the `dlcore` command stay quick.
    if name == "cluster":
        import importlib

        return importlib.import_module("dlcore.cluster")
    raise AttributeError(f"module 'dlcore' has no attribute {name!r}")


__all__ = ["CSVLogger", "Checkpoint", "CheckpointError", "EarlyStopping", "TensorBoard", "TrainState", "Trainer", "boxes", "checkpoint", "cluster", "data", "decode",
           "export", "inspect", "losses", "metrics", "models", "nn", "optim", "plot", "precision", "quantize", "schedules", "train", "transfer", "tune", "weights"]
