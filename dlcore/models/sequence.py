"""Sequence models: the forecasting models of Géron's ch. 13 (Processing Sequences Using RNNs and CNNs), by name.

Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 13, forecasts Chicago's daily rail
ridership from windows of past days (`dlcore.data.timeseries.windows` builds them). Every model takes a
batch of windows ``(B, T, input_size)``, batch first, and returns

- sequence-to-vector models: ``(B, output_size)``, the forecast made after the window's last step
  (``output_size=1``: the next day; ``14``: the next two weeks in one shot);
- sequence-to-sequence models: ``(B, T', output_size)``, a forecast after *every* step (``T' = T``,
  or ``(T - 4) // 2 + 1`` for the downsampling model).

===========================  =====================================  =======================================
registered name              class                                  the book's section
===========================  =====================================  =======================================
``forecast_linear``          `LinearForecaster`                     Forecasting Using a Linear Model
``simple_rnn_forecaster``    `SimpleRnnModel` (hand-written loop)   Forecasting Using a Simple RNN
``rnn_forecaster``           `RnnModel` (``nn.RNN``, num_layers)    Simple RNN; Deep RNN (3 layers)
``mulvar_rnn_forecaster``    `RnnModel` with 5 inputs               Forecasting Multivariate Time Series
``ahead_rnn_forecaster``     `RnnModel`, 5 inputs, 14 outputs       Forecasting Several Time Steps Ahead
``seq2seq_rnn``              `Seq2SeqRnnModel`                      Forecasting Using a Seq2Seq Model
``ln_rnn_forecaster``        `LnRnnModel` (layer norm, dropout)     Fighting the Unstable Gradients Problem
``lstm_forecaster``          `LstmModel` (an ``LSTMCell`` loop)     LSTM cells
``gru_forecaster``           `GruModel` (``nn.GRU``)                GRU cells
``downsampling_forecaster``  `DownsamplingModel` (Conv1d + GRU)     Using 1D convolutional layers
``wavenet_forecaster``       `WavenetModel` (causal dilated convs)  WaveNet
===========================  =====================================  =======================================

Parameters are initialised as PyTorch does (U(+-1/sqrt(fan_in)) for Linear, Conv1d and the recurrent
layers), so a model trained the book's way starts where the book's starts in distribution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from dlcore.checks import check_int
from dlcore.models.registry import register
from dlcore.nn.conv import CausalConv1d, Conv1d
from dlcore.nn.layers import Activation, Flatten, Linear, Sequential
from dlcore.nn.recurrent import GRU, RNN, LayerNormRNNCell, LSTMCell, Recurrence

__all__ = [
    "DownsamplingModel", "GruModel", "LinearForecaster", "LnRnnModel", "LstmModel", "RnnModel",
    "Seq2SeqRnnModel", "SimpleRnnModel", "WavenetModel",
]


def check_windows(x, input_size: int, model: str, *, window: int | None = None, min_steps: int = 1) -> None:
    """One clear line when ``x`` is not a batch of windows ``(B, T, input_size)``.

    Args:
        x: the model's input.
        input_size: features per step the model was built for.
        model: the model's name, for the message.
        window: the exact window length the model needs (the linear model), or None for any.
        min_steps: the fewest steps the model can read (a convolution's kernel).
    """
    shape = tuple(getattr(x, "shape", ()))
    want = f"(B, {window if window else 'T'}, {input_size})"
    if len(shape) != 3:
        raise ValueError(f"{model} expects windows of shape {want} (batch, time, features), got shape {shape}"
                         + ("; add a feature axis: x[..., None]" if len(shape) == 2 and input_size == 1 else ""))
    if shape[-1] != input_size:
        raise ValueError(f"{model} was built for input_size={input_size} features per step, got {shape[-1]} "
                         f"(input shape {shape}, expected {want})")
    if window is not None and shape[1] != window:
        raise ValueError(f"{model} was built for windows of {window} steps, got {shape[1]} (input shape {shape})")
    if shape[1] < min_steps:
        raise ValueError(f"{model} needs windows of at least {min_steps} steps, got {shape[1]} (input shape {shape})")


@register("forecast_linear")
class LinearForecaster(nnx.Module):
    """The linear forecaster of Géron, Hands-On Machine Learning, ch. 13, Forecasting Using a Linear Model.

    ``nn.Sequential(nn.Flatten(), nn.Linear(window_length, 1))``: the forecast is a weighted sum of the
    window's ``window * input_size`` values plus a bias (the book: validation MAE 37,726 on rail).

    Args:
        window: steps per input window (56 in the book).
        input_size: features per step (1: rail only).
        output_size: values forecast (1: the next day).
        rngs: NNX random streams.

    Shapes: (B, window, input_size) -> (B, output_size). Submodules: ``layers`` ("1" is the Linear, as
    the book's ``Sequential``).
    """

    def __init__(self, window: int = 56, input_size: int = 1, output_size: int = 1, *, rngs: nnx.Rngs):
        self.window = check_int(window, "window", low=1, who="LinearForecaster")
        self.input_size = check_int(input_size, "input_size", low=1, who="LinearForecaster")
        self.layers = Sequential(Flatten(),                                   # (B, T, F) -> (B, T * F)
                                 Linear(window * input_size, output_size, rngs=rngs))

    def __call__(self, x):
        check_windows(x, self.input_size, "forecast_linear", window=self.window)
        return self.layers(x)


@register("simple_rnn_forecaster")
class SimpleRnnModel(nnx.Module):
    """The hand-written simple RNN of Géron, Hands-On Machine Learning, ch. 13, Forecasting Using a Simple RNN.

    A memory cell ``h' = tanh(Linear([x_t, h]))`` (one ``Linear(input_size + hidden_size, hidden_size)``
    on the concatenated input and state) applied at every step from ``h = 0``, then
    ``Linear(hidden_size, output_size)`` on the last state. The book's Python loop over time is a
    ``lax.scan`` here: JAX's loop, one compiled step body where a Python loop would unroll all 56
    steps. The book: validation MAE 30,659 with ``SimpleRnnModel(1, 32, 1)`` on rail.

    Args:
        input_size: features per step.
        hidden_size: recurrent neurons (32).
        output_size: values forecast.
        rngs: NNX random streams.

    Shapes: (B, T, input_size) -> (B, output_size). Submodules: ``memory_cell`` ("0" Linear, "1" tanh),
    ``output``.
    """

    def __init__(self, input_size: int = 1, hidden_size: int = 32, output_size: int = 1, *, rngs: nnx.Rngs):
        self.input_size = check_int(input_size, "input_size", low=1, who="SimpleRnnModel")
        self.hidden_size = check_int(hidden_size, "hidden_size", low=1, who="SimpleRnnModel")
        self.memory_cell = Sequential(Linear(input_size + hidden_size, hidden_size, rngs=rngs), Activation("tanh"))
        self.output = Linear(hidden_size, output_size, rngs=rngs)

    def __call__(self, x):
        check_windows(x, self.input_size, "simple_rnn_forecaster")
        def step(h, x_t):                                       # h (B, H), x_t (B, F)
            return self.memory_cell(jnp.concatenate([x_t, h], axis=1)), None   # Linear on (B, F + H), tanh

        h0 = jnp.zeros((x.shape[0], self.hidden_size), x.dtype)           # the book's H = zeros
        h, _ = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))              # over time: (T, B, F)
        return self.output(h)


@register("rnn_forecaster")
class RnnModel(nnx.Module):
    """A recurrent layer then a Linear on its last output: the book's ``nn.RNN`` version of ``SimpleRnnModel``.

    Géron, Hands-On Machine Learning, ch. 13, Forecasting Using a Simple RNN (``nn.RNN(input_size,
    hidden_size, batch_first=True)``, two biases) and Forecasting Using a Deep RNN (``num_layers=3``:
    validation MAE 29,273); with ``input_size=5`` the multivariate model (23,227), with
    ``output_size=14`` the model that forecasts 14 days in one shot.

    Args:
        input_size: features per step.
        hidden_size: recurrent neurons per layer (32).
        output_size: values forecast.
        num_layers: stacked recurrent layers.
        dropout: dropout between recurrent layers (train mode only), as torch's ``dropout``.
        rngs: NNX random streams.

    Shapes: (B, T, input_size) -> (B, output_size). Submodules: ``rnn``, ``output``.
    """

    _layer = RNN
    _name = "rnn_forecaster"

    def __init__(self, input_size: int = 1, hidden_size: int = 32, output_size: int = 1, num_layers: int = 1,
                 dropout: float = 0.0, *, rngs: nnx.Rngs):
        self.input_size = check_int(input_size, "input_size", low=1, who=type(self).__name__)
        self.rnn = self._layer(input_size, hidden_size, num_layers=num_layers, dropout=dropout,
                               batch_first=True, rngs=rngs)
        self.output = Linear(hidden_size, output_size, rngs=rngs)

    def __call__(self, x):
        check_windows(x, self.input_size, self._name)
        outputs, _ = self.rnn(x)                                # (B, T, H)
        return self.output(outputs[:, -1])                      # (B, output_size)


@register("mulvar_rnn_forecaster")
def mulvar_rnn_forecaster(input_size: int = 5, hidden_size: int = 32, output_size: int = 1, num_layers: int = 1,
                          *, rngs: nnx.Rngs) -> RnnModel:
    """The multivariate RNN of Géron, Hands-On Machine Learning, ch. 13, Forecasting Multivariate Time Series.

    `RnnModel` with 5 inputs per day: rail, bus and the one-hot type (weekday, Saturday, Sunday or
    holiday) of the *next* day (`dlcore.data.timeseries.next_step_covariates`). The book: validation
    MAE 23,227. Shapes: (B, T, 5) -> (B, output_size).
    """
    return RnnModel(input_size, hidden_size, output_size, num_layers, rngs=rngs)


@register("ahead_rnn_forecaster")
def ahead_rnn_forecaster(input_size: int = 5, hidden_size: int = 32, output_size: int = 14, *,
                         rngs: nnx.Rngs) -> RnnModel:
    """The 14-days-ahead RNN of Géron, Hands-On Machine Learning, ch. 13, Forecasting Several Time Steps Ahead.

    `RnnModel` on the multivariate windows whose last output is the next 14 days of rail ridership,
    all at once (the book's ``ahead_model``). Shapes: (B, T, 5) -> (B, 14).
    """
    return RnnModel(input_size, hidden_size, output_size, rngs=rngs)


@register("seq2seq_rnn")
class Seq2SeqRnnModel(RnnModel):
    """The seq2seq RNN of Géron, Hands-On Machine Learning, ch. 13, Forecasting Using a Sequence-to-Sequence Model.

    `RnnModel` whose output Linear reads every step: after step t it forecasts steps t+1 .. t+14, so
    the loss has a term at every step (more gradient, less of it through time). Train it on
    ``windows(..., mode="seq2seq", horizon=14)``; after training only the last step's forecast is used.
    The book: validation MAE 23,350 for t+1 and 35,315 for t+14 (``Seq2SeqRnnModel(5, 32, 14)``).

    Args:
        input_size, hidden_size, output_size, num_layers, dropout, rngs: as `RnnModel` (defaults 5, 32, 14).

    Shapes: (B, T, input_size) -> (B, T, output_size).
    """

    _name = "seq2seq_rnn"

    def __init__(self, input_size: int = 5, hidden_size: int = 32, output_size: int = 14, num_layers: int = 1,
                 dropout: float = 0.0, *, rngs: nnx.Rngs):
        super().__init__(input_size, hidden_size, output_size, num_layers, dropout, rngs=rngs)

    def __call__(self, x):
        check_windows(x, self.input_size, self._name)
        outputs, _ = self.rnn(x)                                # (B, T, H)
        return self.output(outputs)                             # (B, T, output_size): Linear on every step


@register("ln_rnn_forecaster")
class LnRnnModel(nnx.Module):
    """A simple RNN with layer norm and dropout at every step, and MC dropout error bars.

    Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 13, Fighting the Unstable
    Gradients Problem: the book's first ``SimpleRnnModel`` with ``nn.LayerNorm(hidden_size)`` in the
    memory cell, just before tanh (`dlcore.nn.recurrent.LayerNormRNNCell`), run by
    `dlcore.nn.recurrent.Recurrence` with dropout on the inputs of every step and on the recurrent state
    (which ``torch.nn.RNN`` cannot do), then ``Linear(hidden_size, output_size)`` on the last state. Its
    dropout layers are ``nnx.Dropout``, so `dlcore.nn.regularization.mc_predict` (with
    ``transform=None``) turns them back on after training and gives Monte Carlo dropout error bars
    around a forecast, as the book suggests.

    Args:
        input_size: features per step (5: the multivariate series).
        hidden_size: recurrent neurons (32).
        output_size: values forecast (14: two weeks in one shot).
        dropout: rate on each step's inputs.
        recurrent_dropout: rate on the state fed back, one mask per sequence.
        rngs: NNX random streams (parameters and dropout masks).

    Shapes: (B, T, input_size) -> (B, output_size). Submodules: ``rnn`` (its ``cell``: ``linear``,
    ``norm``), ``output``.
    """

    def __init__(self, input_size: int = 5, hidden_size: int = 32, output_size: int = 14, dropout: float = 0.1,
                 recurrent_dropout: float = 0.1, *, rngs: nnx.Rngs):
        self.input_size = check_int(input_size, "input_size", low=1, who="LnRnnModel")
        self.rnn = Recurrence(LayerNormRNNCell(input_size, hidden_size, rngs=rngs), dropout=dropout,
                              recurrent_dropout=recurrent_dropout, rngs=rngs)
        self.output = Linear(hidden_size, output_size, rngs=rngs)

    def __call__(self, x):
        check_windows(x, self.input_size, "ln_rnn_forecaster")
        _outputs, h = self.rnn(x)                                # h: (B, H), the state after the last step
        return self.output(h)


@register("lstm_forecaster")
class LstmModel(nnx.Module):
    """The ``LSTMCell`` model of Géron, Hands-On Machine Learning, ch. 13, LSTM cells.

    From the section Tackling the Short-Term Memory Problem: an ``LSTMCell`` run over time from zero
    states (h, c), the book's hand-written loop (here `dlcore.nn.recurrent.Recurrence`, which runs any
    cell with ``lax.scan``), then ``Linear(hidden_size, output_size)`` on the last short-term state h. A
    loop of cells is what lets one add layer norm or dropout at every step.

    Args:
        input_size: features per step.
        hidden_size: LSTM units (32).
        output_size: values forecast.
        rngs: NNX random streams.

    Shapes: (B, T, input_size) -> (B, output_size). Submodules: ``memory_cell`` (a ``Recurrence`` whose
    ``cell`` is the ``LSTMCell``), ``output``.
    """

    def __init__(self, input_size: int = 1, hidden_size: int = 32, output_size: int = 1, *, rngs: nnx.Rngs):
        self.input_size = check_int(input_size, "input_size", low=1, who="LstmModel")
        self.memory_cell = Recurrence(LSTMCell(input_size, hidden_size, rngs=rngs))
        self.output = Linear(hidden_size, output_size, rngs=rngs)

    def __call__(self, x):
        check_windows(x, self.input_size, "lstm_forecaster")
        _outputs, (h, _c) = self.memory_cell(x)                  # h, c: (B, H) after the last step
        return self.output(h)


@register("gru_forecaster")
class GruModel(RnnModel):
    """`RnnModel` with a GRU layer: Géron, Hands-On Machine Learning, ch. 13, GRU cells.

    The book: "just replace nn.RNN or nn.LSTM with nn.GRU".

    Args:
        input_size, hidden_size, output_size, num_layers, dropout, rngs: as `RnnModel`.

    Shapes: (B, T, input_size) -> (B, output_size). Submodules: ``rnn`` (a GRU), ``output``.
    """

    _layer = GRU
    _name = "gru_forecaster"


@register("downsampling_forecaster")
class DownsamplingModel(nnx.Module):
    """Conv1d then GRU: Géron, Hands-On Machine Learning, ch. 13, Using 1D convolutional layers to process sequences.

    ``Conv1d(input_size, hidden_size, kernel_size=4, stride=2)`` -> ReLU -> ``GRU(hidden_size,
    hidden_size)`` -> ``Linear(hidden_size, output_size)`` at every step. The stride halves the
    sequence, so the GRU sees longer patterns and the book doubles the window to 112 days. Output j
    reads input steps 2j .. 2j+3, so its targets are the seq2seq targets with the first 3 steps
    cropped and every other step kept: ``y[:, 3::2]``.

    Args:
        input_size: features per step (5).
        hidden_size: convolution channels and GRU units (32).
        output_size: values forecast at every (downsampled) step (14).
        rngs: NNX random streams.

    Shapes: (B, T, input_size) -> (B, (T - 4) // 2 + 1, output_size); T >= 4. Submodules: ``conv``,
    ``gru``, ``linear``.
    """

    def __init__(self, input_size: int = 5, hidden_size: int = 32, output_size: int = 14, *, rngs: nnx.Rngs):
        self.input_size = check_int(input_size, "input_size", low=1, who="DownsamplingModel")
        self.conv = Conv1d(input_size, hidden_size, kernel_size=4, stride=2, rngs=rngs)
        self.gru = GRU(hidden_size, hidden_size, batch_first=True, rngs=rngs)
        self.linear = Linear(hidden_size, output_size, rngs=rngs)

    def __call__(self, x):
        check_windows(x, self.input_size, "downsampling_forecaster", min_steps=4)
        z = jax.nn.relu(self.conv(x))           # (B, T', H): dlcore's Conv1d is (N, L, C), no permute needed
        z, _ = self.gru(z)                      # (B, T', H)
        return self.linear(z)                   # (B, T', output_size)


@register("wavenet_forecaster")
class WavenetModel(nnx.Module):
    """The simplified WaveNet of Géron, Hands-On Machine Learning, ch. 13, WaveNet (van den Oord et al., 2016).

    Causal 1-D convolutions with kernel 2 and dilations 1, 2, 4, 8, 1, 2, 4, 8, each followed by ReLU
    (receptive field 31 steps), then ``Linear(hidden_size, output_size)`` at every step. Causal
    padding keeps the length, so the targets are the plain seq2seq ones.

    Args:
        input_size: features per step (5).
        hidden_size: channels of every convolution (32).
        output_size: values forecast at every step (14).
        dilations: one convolution per entry.
        rngs: NNX random streams.

    Shapes: (B, T, input_size) -> (B, T, output_size). Submodules: ``convs`` (conv "0", ReLU "1", ...),
    ``output``.
    """

    def __init__(self, input_size: int = 5, hidden_size: int = 32, output_size: int = 14,
                 dilations: tuple[int, ...] = (1, 2, 4, 8) * 2, *, rngs: nnx.Rngs):
        self.input_size = check_int(input_size, "input_size", low=1, who="WavenetModel")
        layers = []
        for d in dilations:
            layers += [CausalConv1d(input_size, hidden_size, kernel_size=2, dilation=d, rngs=rngs), Activation("relu")]
            input_size = hidden_size
        self.convs = Sequential(*layers)
        self.output = Linear(hidden_size, output_size, rngs=rngs)

    def __call__(self, x):
        check_windows(x, self.input_size, "wavenet_forecaster")
        return self.output(self.convs(x))       # (B, T, hidden) -> (B, T, output_size)
