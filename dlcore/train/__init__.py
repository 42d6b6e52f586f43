"""The training core: TrainState, pure steps, the Trainer and its callbacks.

`Trainer` runs any batch source (`dlcore.data.protocol`) through the supervised step or a custom
one; `train_step`, `eval_step`, `predict_step` and the metric accumulators (`init_metrics`,
`compute_metrics`) are the pure pieces for writing a loop by hand. `TrainState.population` /
`TrainState.stack` and `population_fit` / `population_epoch` train N models (seeds, learning rates)
at once with one ``jit(vmap(...))``. `DataParallel` / `data_mesh` (and the rest of `dlcore.train.parallel`)
spread a Trainer over a device mesh: ``Trainer(..., mesh=data_mesh())``.
"""

from dlcore.train.callbacks import Callback, Checkpoint, CSVLogger, EarlyStopping, ProgressBar, TensorBoard
from dlcore.train.loop import NonFiniteError, Trainer
from dlcore.train.lr import LRFinderResult, LRScheduler, ReduceLROnPlateau, lr_find
from dlcore.train.parallel import DataParallel, data_mesh
from dlcore.train.population import (HalvingResult, population_epoch, population_evaluate, population_fit,
                                     population_keys, population_metrics, population_select, successive_halving)
from dlcore.train.state import TrainState
from dlcore.train.step import (compute_metrics, eval_step, init_metrics, predict_step, train_epoch, train_step,
                               update_metrics)

__all__ = ["CSVLogger", "Callback", "Checkpoint", "EarlyStopping", "LRFinderResult", "LRScheduler", "NonFiniteError",
           "ProgressBar", "ReduceLROnPlateau", "TensorBoard", "TrainState", "Trainer", "compute_metrics", "eval_step",
           "init_metrics", "lr_find", "population_epoch", "population_fit", "population_keys",
           "population_metrics", "predict_step", "train_epoch", "train_step", "update_metrics",
           "HalvingResult", "population_evaluate", "population_select", "successive_halving", "DataParallel",
           "data_mesh"]
