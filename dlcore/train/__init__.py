"""The training core: TrainState, pure steps, the Trainer and its callbacks."""

from dlcore.train.callbacks import Callback, Checkpoint, EarlyStopping, ProgressBar
from dlcore.train.loop import Trainer
from dlcore.train.state import TrainState
from dlcore.train.step import eval_step, predict_step, train_epoch, train_step

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "ProgressBar", "TrainState", "Trainer",
           "eval_step", "predict_step", "train_epoch", "train_step"]
