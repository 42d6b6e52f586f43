"""The training core: TrainState, pure steps, the Trainer and its callbacks."""

from dlcore.train.callbacks import Callback, Checkpoint, EarlyStopping, ProgressBar
from dlcore.train.loop import Trainer
from dlcore.train.lr import LRFinderResult, LRScheduler, ReduceLROnPlateau, lr_find
from dlcore.train.state import TrainState
from dlcore.train.step import eval_step, predict_step, train_epoch, train_step

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "LRFinderResult", "LRScheduler", "ProgressBar",
           "ReduceLROnPlateau", "TrainState", "Trainer", "eval_step", "lr_find", "predict_step", "train_epoch",
           "train_step"]
