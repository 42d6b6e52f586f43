"""Forecasting rail ridership with linear, recurrent and convolutional models, Géron, Hands-On Machine
Learning with Scikit-Learn and PyTorch, ch. 13.

Recipe (Preparing the Data for Machine Learning Models through WaveNet): Chicago's daily rail
ridership divided by 1e6; train 2016-2018, validate 2019-01..05; every 56-day window of the past is
an input and the day after it the target (`dlcore.data.timeseries.windows`); batch 32, shuffled;
Huber loss; SGD lr 3e-3, momentum 0.9. Validation MAE (in riders) of each model, the book's beside:

- linear, `Flatten` + `Linear(56, 1)`: 37,726;
- the hand-written `SimpleRnnModel(1, 32, 1)`: 30,659 (and its `nn.RNN` twin, "similar");
- a 3-layer RNN: 29,273;
- multivariate, 5 inputs (rail, bus and the one-hot type of the next day): 23,227;
- 14 days ahead: the univariate RNN rolled out one day at a time (Figure 13-11), and an RNN with
  14 outputs;
- the seq2seq RNN (a 14-day forecast after every step): 23,350 for t+1 and 35,315 for t+14;
- a layer-norm RNN with dropout at every step (0.1 on the inputs and on the recurrent state; the
  book gives no rates), 14 outputs, whose 100 MC dropout samples give error bars;
- an `LSTMCell` loop and a GRU (the book prints no figure; here on the multivariate inputs);
- Conv1d(k4, s2) + GRU on 112-day windows, targets cropped by 3 and downsampled by 2, and a
  WaveNet (causal convolutions, kernel 2, dilations 1, 2, 4, 8 twice): "similar performance". Both
  read the 5 multivariate inputs, as the book's `input_size=5` says (its dataset line for the
  downsampling model passes the rail series alone).

The naive forecast (the value 7 days earlier) over the same validation targets is printed beside.
The book divides the multivariate data by 1e6 twice (the bus and rail columns end up near 1e-7,
the one-hot columns near 1e-6); dlcore divides the ridership once and keeps the one-hot columns 0/1.

Training: the chapter says only "train the model" with the training function of ch. 10; dlcore
trains every model for at most 300 epochs (`--epochs` changes it), then keeps the weights of the
best validation MAE, stopping once 50 epochs pass without a better one (counted after a 100-epoch
warm-up: on the stand-in the univariate RNNs sit on a plateau for about 100 epochs before they
learn the weekly pattern). The two convolutional models, for which the book prints no figure, are
trained with Adam (lr 1e-3) for half the epochs: with SGD lr 3e-3 they stay on their first plateau
(a constant forecast, MAE above 100,000 on the stand-in) for the 150 epochs a CPU run can afford
(each batch of a convolutional model is one jitted step on a CPU, four to ten times the cost of an
RNN epoch). Their t+1 figures are over the 26 validation windows of 112 days (forecasts for
2019-04-23 .. 05-18), not the 95 windows of 56 days of the other models (2019-02-26 .. 05-31).
On the stand-in the univariate RNNs are still improving after 300 epochs: trained for 1000
epochs (the same recipe, no early stopping) the hand-written RNN reached 20,557 and the `nn.RNN`
one 16,805, below the linear model as in the book; `--epochs 1000` runs that longer budget.

Stand-in: without the CTA file it uses `daily_series`, a synthetic series with the same periods; its
figures differ from the book's (both are printed). Under --quick three of the models (the simple RNN,
the seq2seq RNN and the layer-norm RNN) train for 2 epochs on part of the data.

Run: `dlcore run ridership_forecasting` or `python examples/ridership_forecasting.py`.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, models, optim
from dlcore.data import timeseries as ts
from dlcore.nn.regularization import mc_predict
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="ridership_forecasting",
    title="Rail ridership forecasts: linear, RNNs, seq2seq, LSTM, GRU, Conv1d+GRU, WaveNet",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 13, Forecasting a Time Series (Forecasting Using a Linear Model to WaveNet)",
    source="the validation MAEs of each model and the 14-day forecast (Figure 13-11)",
    data="ridership",
    standin="daily_series",
    book_figures={"linear_val_mae": 37726.0, "simple_rnn_val_mae": 30659.0, "deep_rnn_val_mae": 29273.0,
                  "mulvar_val_mae": 23227.0, "seq2seq_t1_val_mae": 23350.0, "seq2seq_t14_val_mae": 35315.0},
)

WINDOW, LONG_WINDOW, HORIZON, SCALE = 56, 112, 14, 1e6
LR, MOMENTUM, BATCH, ADAM_LR = 3e-3, 0.9, 32, 1e-3
EPOCHS, WARMUP, PATIENCE = 300, 100, 50

# key: (registered model, its arguments, task, label). Tasks: "uni" rail -> next day; "mulvar" 5 inputs
# -> next day; "ahead" 5 inputs -> next 14 days; "seq" 5 inputs -> next 14 days after every step;
# "down" 112-day seq2seq targets[3::2]; "long" 112-day seq2seq.
MODELS = {
    "linear": ("forecast_linear", {}, "uni", "linear Flatten + Linear(56, 1)"),
    "simple_rnn": ("simple_rnn_forecaster", {}, "uni", "SimpleRnnModel(1, 32, 1), hand loop"),
    "rnn": ("rnn_forecaster", {}, "uni", "nn.RNN(1, 32) + Linear"),
    "deep_rnn": ("rnn_forecaster", {"num_layers": 3}, "uni", "nn.RNN, 3 layers"),
    "mulvar": ("mulvar_rnn_forecaster", {}, "mulvar", "multivariate RNN, 5 inputs"),
    "ahead": ("ahead_rnn_forecaster", {}, "ahead", "RNN, 14 outputs at once"),
    "seq2seq": ("seq2seq_rnn", {}, "seq", "Seq2SeqRnnModel(5, 32, 14)"),
    "ln_rnn": ("ln_rnn_forecaster", {}, "ahead", "layer-norm RNN, dropout, 14 outputs"),
    "lstm": ("lstm_forecaster", {"input_size": 5}, "mulvar", "LSTMCell loop, 5 inputs"),
    "gru": ("gru_forecaster", {"input_size": 5}, "mulvar", "GRU, 5 inputs"),
    "downsampling": ("downsampling_forecaster", {}, "down", "Conv1d(k4, s2) + GRU, 112 days"),
    "wavenet": ("wavenet_forecaster", {}, "long", "WaveNet, dilations (1,2,4,8) x 2, 112 days"),
}
QUICK = ("simple_rnn", "seq2seq", "ln_rnn")


def _datasets(series: np.ndarray, quick: bool) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """task -> {"train", "valid"} windows, from the (T, 5) multivariate series of each period."""
    train, valid = series["train"], series["valid"]
    out = {}
    for name, (build, cols) in {
        "uni": (lambda s: ts.windows(s, WINDOW, target=[0]), 1),
        "mulvar": (lambda s: ts.windows(s, WINDOW, target=[0]), 5),
        "ahead": (lambda s: ts.windows(s, WINDOW, mode="ahead", horizon=HORIZON), 5),
        "seq": (lambda s: ts.windows(s, WINDOW, mode="seq2seq", horizon=HORIZON), 5),
        "down": (lambda s: _downsampled(ts.windows(s, LONG_WINDOW, mode="seq2seq", horizon=HORIZON)), 5),
        "long": (lambda s: ts.windows(s, LONG_WINDOW, mode="seq2seq", horizon=HORIZON), 5),
    }.items():
        tr, va = build(train[:, :cols]), build(valid[:, :cols])
        if quick:  # the last 128 training windows: seconds, not minutes
            tr = {k: v[-128:] for k, v in tr.items()}
        out[name] = {"train": tr, "valid": va}
    return out


def _downsampled(split: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # conv output j reads input steps 2j .. 2j+3: its targets are those after step 2j+3
    return {"x": split["x"], "y": split["y"][:, 3::2]}          # (N, 112, 14) -> (N, 55, 14)


class _EarlyStoppingAfterWarmup(dlcore.EarlyStopping):
    """`EarlyStopping` that starts watching after `warmup` epochs (Keras's ``start_from_epoch``)."""

    def __init__(self, warmup: int, **kwargs):
        super().__init__(**kwargs)
        self.warmup = warmup

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch > self.warmup:
            super().on_epoch_end(trainer, epoch, logs)


def _fit(ctx: Context, key: str, model, data: dict, epochs: int, *, adam: bool = False) -> int:
    """Huber loss, SGD (or Adam); the best validation MAE's weights, early stopping after the warm-up.

    Returns the number of epochs run.
    """
    tx, hp = ((optim.adam(ADAM_LR), {"optimizer": "adam", "lr": ADAM_LR}) if adam else
              (optim.sgd(LR, momentum=MOMENTUM), {"optimizer": "sgd", "lr": LR, "momentum": MOMENTUM}))
    kwargs = ctx.trainer_kwargs({"model": key, "batch_size": BATCH, "epochs": epochs, **hp}, tag=key)
    stop = _EarlyStoppingAfterWarmup(WARMUP if epochs > WARMUP else 0, monitor="val_mae", patience=PATIENCE,
                                     restore_best_weights=True)
    kwargs["callbacks"] = [*kwargs["callbacks"], stop]
    trainer = dlcore.Trainer(model, tx, losses.huber, metrics=["mae"], batch_size=BATCH,
                             epoch_mode="scan" if key == "downsampling" else "auto", **kwargs)
    history = trainer.fit(data["train"], epochs=epochs, validation=data["valid"], resume=ctx.resume)
    return len(history["loss"])


@nnx.jit
def _forward(model, x):
    """model(x), compiled once per model and input shape (an eager call would retrace the recurrent scan)."""
    return model(x)


def _mae(pred, target) -> float:
    return float(np.mean(np.abs(np.asarray(pred) - np.asarray(target)))) * SCALE


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load()
    full = splits["all"]
    # 5 features per day: rail, bus (/ 1e6, once) and the one-hot type of the next day (the book's
    # shift(-1) over the whole series, so the last day of each period knows the next period's first)
    series = ts.next_step_covariates(full["x"] / SCALE, full["day_type"], 3)     # (T - 1, 5)
    dates = full["date"][:-1]
    periods = {name: series[ts.period(dates, *span)]
               for name, span in (("train", ("2016-01", "2018-12")), ("valid", ("2019-01", "2019-05")))}
    data = _datasets(periods, ctx.quick)
    epochs = ctx.n_epochs(EPOCHS, quick=2)
    keys = QUICK if ctx.quick else tuple(MODELS)

    valid_rail = periods["valid"][:, 0]
    y_true, y_naive = ts.naive_forecast(valid_rail[WINDOW - 7:], lag=7)        # the targets of the 56-day windows
    metrics = {"naive_val_mae": _mae(y_naive, y_true)}
    rows = [("naive forecast, value 7 days earlier", "naive_val_mae", None)]
    trained = {}
    for key in keys:
        name, kwargs, task, label = MODELS[key]
        model = models.create(name, seed=42, **kwargs)
        d = data[task]
        conv = task in ("down", "long")
        n = _fit(ctx, key, model, d, max(1, epochs // 2) if conv and not ctx.quick else epochs, adam=conv)
        trained[key] = model
        pred = np.asarray(_forward(model, d["valid"]["x"]))
        if task in ("uni", "mulvar"):
            metrics[f"{key}_val_mae"] = _mae(pred, d["valid"]["y"])
            rows.append((label, f"{key}_val_mae", n))
        else:
            last, y = (pred, d["valid"]["y"]) if task == "ahead" else (pred[:, -1], d["valid"]["y"][:, -1])
            metrics[f"{key}_t1_val_mae"], metrics[f"{key}_t14_val_mae"] = _mae(last[:, 0], y[:, 0]), \
                _mae(last[:, -1], y[:, -1])
            rows.append((label + (", Adam" if conv else "") + ", t+1", f"{key}_t1_val_mae", n))
            rows.append((label + ", t+14", f"{key}_t14_val_mae", None))

    ctx.print(f"\nvalidation MAE, riders ({ctx.dataset}; the book's on the CTA data):")
    width = max(len(label) for label, _, _ in rows)
    ctx.print(f"{'model':<{width}} {'epochs':>6} {'dlcore':>9} {'book':>9}")
    for label, metric, n in rows:
        book = EXAMPLE.book_figures.get(metric)
        ctx.print(f"{label:<{width}} {'' if n is None else n:>6} {metrics[metric]:>9,.0f} "
                  f"{'' if book is None else f'{book:,.0f}':>9}")

    # the next 14 days after the first 56 days of the validation period
    window = periods["valid"][None, :WINDOW]                                     # (1, 56, 5)
    actual = periods["valid"][WINDOW:WINDOW + HORIZON, 0] * SCALE
    forecasts = {}
    if "simple_rnn" in trained:  # one day at a time, each forecast appended to the inputs (Figure 13-11)
        x = window[..., :1]
        for _ in range(HORIZON):
            x = np.concatenate([x, np.asarray(_forward(trained["simple_rnn"], x[:, -WINDOW:]))[:, None]], axis=1)
        forecasts["RNN, one day at a time"] = x[0, WINDOW:, 0] * SCALE
        metrics["rollout_14day_mae"] = _mae(forecasts["RNN, one day at a time"] / SCALE, actual / SCALE)
    if "ahead" in trained:
        forecasts["RNN, 14 outputs"] = np.asarray(_forward(trained["ahead"], window))[0] * SCALE
    if "seq2seq" in trained:
        forecasts["seq2seq RNN, last step"] = np.asarray(_forward(trained["seq2seq"], window))[0, -1] * SCALE
    mean, std = mc_predict(trained["ln_rnn"], window, n_samples=100, seed=42, transform=None)
    mean, std = np.asarray(mean)[0] * SCALE, np.asarray(std)[0] * SCALE
    metrics["ln_rnn_mc_mean_std"] = float(std.mean())
    ctx.print(f"\n14-day forecast after {str(dates[ts.period(dates, '2019-01', '2019-05').start + WINDOW - 1])}, "
              f"thousands of riders:")
    ctx.print("actual                      " + " ".join(f"{v / 1e3:5.0f}" for v in actual))
    for label, f in forecasts.items():
        ctx.print(f"{label:<28}" + " ".join(f"{v / 1e3:5.0f}" for v in f))
    ctx.print("LN-RNN, MC dropout mean     " + " ".join(f"{v / 1e3:5.0f}" for v in mean))
    ctx.print("LN-RNN, MC dropout std      " + " ".join(f"{v / 1e3:5.0f}" for v in std))

    def draw(plt):
        fig, ax = plt.subplots(figsize=(8, 4))
        days = np.arange(1, HORIZON + 1)
        ax.plot(days, actual, "k.-", label="actual")
        for label, f in forecasts.items():
            ax.plot(days, f, marker="x", label=label)
        ax.errorbar(days, mean, yerr=2 * std, fmt="o--", capsize=3, label="LN-RNN, MC dropout mean ± 2 std")
        ax.set(xlabel="days ahead", ylabel="rail riders", title=f"14-day rail forecast ({ctx.dataset})")
        ax.grid(True)
        ax.legend()
        return fig

    ctx.save_plot(EXAMPLE.name, draw)
    return metrics


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
