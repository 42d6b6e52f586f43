"""Thermometer calibration: fit t_c = w * t_u + b to 11 readings (Antiga et al., ch. 5-6).

The book's runs, each from w = 1, b = 0 (sections 5.4.2-5.5.3, 6.2.2 and 6.3):
  1. the hand-derived gradient (5.4.2 Getting analytical, 5.4.3 Iterating to fit the model): `grad_fn`
     built from `dloss_fn`, `dmodel_dw` and `dmodel_db`, 100 epochs on the raw t_u:
     a. lr 1e-2: epoch 1 loss 1763.884644, gradient [4517.2969, 82.6000]; the updates overshoot and the
        loss is inf at epoch 11;
     b. lr 1e-4: stable but stalling, epoch 100 loss 29.022669, parameters [0.2327, -0.0438];
     c. (5.4.4 Normalizing inputs) lr 1e-2 on t_un = 0.1 * t_u: epoch 1 loss 80.364342;
  2. gradient descent, lr 1e-2, on 0.1 * t_u, 5000 epochs: loss 2.927648, w 5.3671, b -17.3012 (w is for
     0.1*t_u);
  3. Adam, lr 0.1, on the raw t_u, 2000 epochs: loss 2.927646, w 0.5367, b -17.3021;
  4. (5.5.3 Training, validation, and overfitting) the book's own printed split, train indices
     [9, 6, 5, 8, 4, 7, 0, 1, 3], validation [2, 10], autograd and SGD lr 1e-2 on 0.1 * t_u, 3000 epochs:
     training loss 3.0125, validation loss 3.5756, parameters [5.1964, -16.7512];
  5. `nn.Linear(1, 1)` on an 80/20 split, SGD 1e-2, 3000 epochs (book: w 5.4319, b -17.9693);
  6. a 1-8-1 tanh MLP on the same split, SGD 1e-3, 5000 epochs (book: train 2.1141, val 2.0215).
Variants 5 and 6 depend on the book's random split (ch. 6 draws a new one) and initial weights, which
dlcore draws with its own generator; 1 to 4 are exact to the printed digits.

Why run 1 is eager: the book's figures are float32 results of PyTorch's eager CPU ops, each op rounded on
its own and the 11 terms of a sum added left to right. Run op by op, JAX rounds the same way, provided the
sums go left to right (`sum_in_order`) and the division by N is by an array (XLA turns a division by a
broadcast scalar into a multiplication by its reciprocal, 1 ulp off). Under `jax.jit`, XLA also fuses
`w * t_u + b` into one fused multiply-add (one rounding instead of two): the jitted loop
(`training_loop_jit`) agrees to about 7 significant digits, not to the book's last one. Run 4 uses
`jax.grad` and a jitted loop: its figures have 4 decimals, which the rounding does not reach.

Run: `dlcore run thermometer [--json out.json]` or `python examples/thermometer.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

import dlcore
from dlcore import losses, optim
from dlcore.checks import check_float, check_int
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="thermometer",
    title="linear regression by gradient descent, Adam, nn.Linear and a 1-8-1 MLP",
    book="Antiga, Stevens, Huang & Viehmann, Deep Learning with PyTorch, 2nd ed.",
    section="ch. 5, The mechanics of learning; ch. 6, Using a neural network to fit the data",
    source=("sections 5.4.2 Getting analytical, 5.4.3 Iterating to fit the model, 5.4.4 Normalizing inputs, "
            "5.5.2 Optimizers a la carte, 5.5.3 Training, validation, and overfitting (Splitting a dataset), "
            "6.2.2 Returning to the linear model, 6.3 Finally a neural network"),
    data="",
    standin="thermometer",
    book_figures={"hand_epoch1_loss": 1763.884644, "hand_epoch1_grad_w": 4517.2969, "hand_epoch1_grad_b": 82.6,
                  "hand_first_nonfinite_epoch": 11,
                  "lr1e4_loss": 29.022669, "lr1e4_w": 0.2327, "lr1e4_b": -0.0438,
                  "normalised_epoch1_loss": 80.364342,
                  "split_train_loss": 3.0125, "split_val_loss": 3.5756, "split_w": 5.1964, "split_b": -16.7512,
                  "gd_loss": 2.927648, "gd_w": 5.3671, "gd_b": -17.3012,
                  "adam_loss": 2.927646, "adam_w": 0.5367, "adam_b": -17.3021,
                  "linear_w": 5.4319, "linear_b": -17.9693,
                  "mlp_train_loss": 2.1141, "mlp_val_loss": 2.0215},
)


# The book's section 5.4: the model, the loss and their derivatives written out by hand. Inputs are the
# book's 1-D tensors: t_u, t_c and t_p of shape (N,), w and b scalars.

@jax.jit
def sum_in_order(x):
    """x[0] + x[1] + ... + x[N-1], added left to right in x's dtype, as PyTorch summed these 11 floats.

    `jnp.sum` lets XLA pick the order (partial sums in vector lanes), which changes the last bit and, after
    a few epochs, the book's last printed digit. Shapes: (N,) -> ().
    """
    return lax.fori_loop(1, x.shape[0], lambda i, total: total + x[i], x[0])


def model(t_u, w, b):
    """The linear model t_p = w * t_u + b. Shapes: (N,), (), () -> (N,)."""
    return w * t_u + b


def loss_fn(t_p, t_c):
    """The mean squared error of the predictions. Shapes: (N,), (N,) -> ()."""
    squared_diffs = (t_p - t_c) ** 2
    return sum_in_order(squared_diffs) / t_p.shape[0]


def dloss_fn(t_p, t_c):
    """d loss / d t_p = 2 (t_p - t_c) / N, one value per reading. Shapes: (N,), (N,) -> (N,).

    N is divided by as a full array: a division by a broadcast scalar is compiled as a multiplication by
    its reciprocal, which is not the correctly rounded quotient PyTorch computes.
    """
    n = jnp.full(t_p.shape, t_p.shape[0], t_p.dtype)
    return 2 * (t_p - t_c) / n


def dmodel_dw(t_u, w, b):
    """d t_p / d w = t_u. Shapes: (N,) -> (N,)."""
    return t_u


def dmodel_db(t_u, w, b):
    """d t_p / d b = 1."""
    return 1.0


def grad_fn(t_u, t_c, t_p, w, b):
    """The gradient of the loss with respect to (w, b) by the chain rule. Shapes: (N,) x 3, (), () -> (2,)."""
    dloss_dtp = dloss_fn(t_p, t_c)
    dloss_dw = dloss_dtp * dmodel_dw(t_u, w, b)
    dloss_db = dloss_dtp * dmodel_db(t_u, w, b)
    return jnp.stack([sum_in_order(dloss_dw), sum_in_order(dloss_db)])


def _check_readings(t_u, t_c, n_epochs, who):
    check_int(n_epochs, "n_epochs", low=1, who=who)
    if np.ndim(t_u) != 1 or np.shape(t_u) != np.shape(t_c) or np.shape(t_u)[0] == 0:
        raise ValueError(f"{who}: t_u and t_c must be 1-D and of one non-zero length (the readings), got shapes "
                         f"{np.shape(t_u)} and {np.shape(t_c)}")
    if not (np.all(np.isfinite(t_u)) and np.all(np.isfinite(t_c))):
        raise ValueError(f"{who}: t_u and t_c hold NaN or infinite readings; drop or fill them first")


def _check_params(params, who):
    if np.shape(params) != (2,):
        raise ValueError(f"{who}: params must be [w, b], shape (2,), got shape {np.shape(params)}")


def training_loop(n_epochs, learning_rate, params, t_u, t_c):
    """The book's loop with the hand-derived gradient, run eagerly (op by op) as PyTorch runs it.

    Each epoch computes the loss and gradient at the current parameters, then steps
    `params - learning_rate * grad`. A diverging run is not stopped: its loss goes to inf, as the book's does.

    Args:
        n_epochs: epochs (>= 1).
        learning_rate: the step size.
        params: (2,) float32, [w, b].
        t_u, t_c: (N,) the inputs and the targets.

    Returns:
        (params, history): the final (2,) parameters and NumPy arrays `loss` (n_epochs,) (before each
        epoch's update, as the book prints it), `params` (n_epochs, 2) (after it) and `grad` (n_epochs, 2).
    """
    _check_readings(t_u, t_c, n_epochs, "training_loop")
    _check_params(params, "training_loop")
    check_float(learning_rate, "learning_rate", low=0, who="training_loop")
    params, t_u, t_c = (jnp.asarray(a, jnp.float32) for a in (params, t_u, t_c))
    losses_, params_, grads = [], [], []
    for _ in range(n_epochs):
        w, b = params
        t_p = model(t_u, w, b)
        loss = loss_fn(t_p, t_c)
        grad = grad_fn(t_u, t_c, t_p, w, b)
        params = params - learning_rate * grad
        losses_.append(loss), params_.append(params), grads.append(grad)
    return params, {"loss": np.asarray(losses_), "params": np.asarray(params_), "grad": np.asarray(grads)}


def training_loop_jit(n_epochs, learning_rate, params, t_u, t_c):
    """`training_loop` as one jitted `lax.scan`: the same arithmetic, but XLA fuses w * t_u + b into a fused
    multiply-add, so the figures agree with the eager loop's to float32 rounding, not bit for bit.

    Returns:
        (params, history) as `training_loop`.
    """
    _check_readings(t_u, t_c, n_epochs, "training_loop_jit")
    _check_params(params, "training_loop_jit")
    check_float(learning_rate, "learning_rate", low=0, who="training_loop_jit")
    params, t_u, t_c = (jnp.asarray(a, jnp.float32) for a in (params, t_u, t_c))
    params, (loss, ps, grads) = _scan_loop(n_epochs, jnp.float32(learning_rate), params, t_u, t_c)
    return params, {"loss": np.asarray(loss), "params": np.asarray(ps), "grad": np.asarray(grads)}


@jax.jit(static_argnums=0)
def _scan_loop(n_epochs, learning_rate, params, t_u, t_c):
    def epoch(params, _):
        w, b = params
        t_p = model(t_u, w, b)
        loss, grad = loss_fn(t_p, t_c), grad_fn(t_u, t_c, t_p, w, b)
        params = params - learning_rate * grad
        return params, (loss, params, grad)

    return lax.scan(epoch, params, None, length=n_epochs)


def split_training_loop(n_epochs, optimizer, params, train_t_u, val_t_u, train_t_c, val_t_c):
    """The book's loop of section 5.5.3: autograd (`jax.grad`) and an optimizer, with a validation loss.

    Both losses are computed at the parameters before each epoch's update, as the book prints them. One
    jitted `lax.scan` over the epochs.

    Args:
        n_epochs: epochs (>= 1).
        optimizer: an optax transformation (the book's `optim.SGD([params], lr=1e-2)` is
            `dlcore.optim.sgd(1e-2)`).
        params: (2,) [w, b].
        train_t_u, val_t_u, train_t_c, val_t_c: (N_train,), (N_val,) inputs and targets.

    Returns:
        (params, history): the final (2,) parameters and NumPy arrays `loss` and `val_loss` (n_epochs,).
    """
    _check_readings(train_t_u, train_t_c, n_epochs, "split_training_loop")
    _check_readings(val_t_u, val_t_c, n_epochs, "split_training_loop")
    _check_params(params, "split_training_loop")
    arrays = (jnp.asarray(a, jnp.float32) for a in (params, train_t_u, val_t_u, train_t_c, val_t_c))
    params, (loss, val_loss) = _split_scan(n_epochs, optimizer, *arrays)
    return params, {"loss": np.asarray(loss), "val_loss": np.asarray(val_loss)}


@jax.jit(static_argnums=(0, 1))
def _split_scan(n_epochs, optimizer, params, train_t_u, val_t_u, train_t_c, val_t_c):
    def train_loss(params):
        return jnp.mean((model(train_t_u, *params) - train_t_c) ** 2)

    def epoch(carry, _):
        params, opt_state = carry
        loss, grad = jax.value_and_grad(train_loss)(params)
        val_loss = jnp.mean((model(val_t_u, *params) - val_t_c) ** 2)
        updates, opt_state = optimizer.update(grad, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, val_loss)

    (params, _), history = lax.scan(epoch, (params, optimizer.init(params)), None, length=n_epochs)
    return params, history


def _vec(values) -> str:
    """[a, b] with 4 decimals, as PyTorch prints the book's tensors."""
    return "[" + ", ".join(f"{float(v):.4f}" for v in values) + "]"


def _first_nonfinite(values) -> int:
    """The 1-based epoch of the first non-finite value, 0 when all are finite."""
    bad = np.flatnonzero(~np.isfinite(values))
    return int(bad[0]) + 1 if bad.size else 0


class LinearModel(nnx.Module):
    """t_p = w * t_u + b with the book's starting point w = 1, b = 0. Shapes: (N, 1) -> (N, 1)."""

    def __init__(self):
        self.w = nnx.Param(jnp.ones(()))
        self.b = nnx.Param(jnp.zeros(()))

    def __call__(self, t_u):
        return self.w * t_u + self.b


def _fit(model, tx, x, y, epochs, ctx, validation=None):
    """Full-batch training, as the book's loops: one step per epoch on all rows."""
    trainer = dlcore.Trainer(model, tx, losses.mse, batch_size=None, shuffle=False,
                             progress=False, seed=ctx.seed)
    history = trainer.fit({"x": x, "y": y}, epochs=epochs, validation=validation)
    return trainer, history


def run(ctx: Context) -> dict[str, float]:
    d = ctx.load()["train"]
    t_u, t_c = d["x"], d["y"]  # (11, 1) each
    # Full-batch steps on 11 points take microseconds, so --quick keeps the book's epochs;
    # --epochs N sets every variant to N.
    n_hand, n_split = (100, 3000) if ctx.epochs is None else (ctx.epochs,) * 2
    n_gd, n_adam, n_lin, n_mlp = (5000, 2000, 3000, 5000) if ctx.epochs is None else (ctx.epochs,) * 4
    figures = {}

    # 1. The hand-derived gradient on the book's 1-D tensors (section 5.4), eagerly.
    u, c, start = t_u[:, 0], t_c[:, 0], jnp.array([1.0, 0.0])
    _, h = training_loop(n_hand, 1e-2, start, u, c)
    bad = _first_nonfinite(h["loss"])
    ctx.print(f"hand-derived gradient, lr 1e-2 on t_u: epoch 1 loss {h['loss'][0]:.6f}, "
              f"grad {_vec(h['grad'][0])}; "
              + (f"loss non-finite ({h['loss'][bad - 1]}) from epoch {bad}" if bad else
                 f"loss finite through {n_hand} epochs"))
    figures.update(hand_epoch1_loss=h["loss"][0], hand_epoch1_grad_w=h["grad"][0, 0],
                   hand_epoch1_grad_b=h["grad"][0, 1], hand_first_nonfinite_epoch=bad)
    p, h = training_loop(n_hand, 1e-4, start, u, c)
    _, hj = training_loop_jit(n_hand, 1e-4, start, u, c)
    ctx.print(f"hand-derived gradient, lr 1e-4 on t_u: epoch {n_hand} loss {h['loss'][-1]:.6f} "
              f"(jitted: {hj['loss'][-1]:.6f}), params {_vec(p)}")
    figures.update(lr1e4_loss=h["loss"][-1], lr1e4_w=p[0], lr1e4_b=p[1], lr1e4_loss_jit=hj["loss"][-1])
    _, h = training_loop(n_hand, 1e-2, start, 0.1 * u, c)
    ctx.print(f"hand-derived gradient, lr 1e-2 on t_un = 0.1 * t_u: epoch 1 loss {h['loss'][0]:.6f}, "
              f"epoch {n_hand} loss {h['loss'][-1]:.6f}")
    figures["normalised_epoch1_loss"] = h["loss"][0]

    # 2-3. The Trainer: gradient descent on normalised inputs, then Adam on the raw ones.
    m1 = LinearModel()
    _, h1 = _fit(m1, optim.sgd(1e-2), 0.1 * t_u, t_c, n_gd, ctx)
    ctx.print(f"gradient descent on 0.1*t_u, {n_gd} epochs: loss {h1['loss'][-1]:.6f}, "
              f"w {float(m1.w[...]):.4f}, b {float(m1.b[...]):.4f}")

    m2 = LinearModel()
    _, h2 = _fit(m2, optim.adam(1e-1), t_u, t_c, n_adam, ctx)
    ctx.print(f"Adam on t_u, {n_adam} epochs: loss {h2['loss'][-1]:.6f}, "
              f"w {float(m2.w[...]):.4f}, b {float(m2.b[...]):.4f}")

    # 4. The split the book printed (section 5.5.3, Splitting a dataset), with that section's recipe.
    tr_b, va_b = [9, 6, 5, 8, 4, 7, 0, 1, 3], [2, 10]
    p, h = split_training_loop(n_split, optim.sgd(1e-2), start, 0.1 * u[tr_b], 0.1 * u[va_b], c[tr_b], c[va_b])
    ctx.print(f"the book's split {tr_b} / {va_b}, SGD 1e-2 on 0.1*t_u, {n_split} epochs: "
              f"training loss {h['loss'][-1]:.4f}, validation loss {h['val_loss'][-1]:.4f}, "
              f"params {_vec(p)}")
    figures.update(split_train_loss=h["loss"][-1], split_val_loss=h["val_loss"][-1], split_w=p[0], split_b=p[1])

    # 5-6. Chapter 6's 80/20 split: a shuffled permutation, the last 20% (2 points) for validation.
    perm = np.random.default_rng(ctx.seed).permutation(len(t_u))
    n_val = int(0.2 * len(t_u))
    tr, va = perm[:-n_val], perm[-n_val:]
    train = {"x": 0.1 * t_u[tr], "y": t_c[tr]}
    val = {"x": 0.1 * t_u[va], "y": t_c[va]}

    lin = dlcore.models.create("linear", seed=ctx.seed)
    _, h3 = _fit(lin, optim.sgd(1e-2), train["x"], train["y"], n_lin, ctx, validation=val)
    ctx.print(f"nn.Linear(1, 1), {n_lin} epochs: train {h3['loss'][-1]:.4f}, val {h3['val_loss'][-1]:.4f}, "
              f"w {float(lin.kernel[0, 0]):.4f}, b {float(lin.bias[0]):.4f}")

    mlp = dlcore.models.create("mlp", sizes=(1, 8, 1), activation="tanh", seed=ctx.seed)
    _, h4 = _fit(mlp, optim.sgd(1e-3), train["x"], train["y"], n_mlp, ctx, validation=val)
    ctx.print(f"1-8-1 tanh MLP, {n_mlp} epochs: train {h4['loss'][-1]:.4f}, val {h4['val_loss'][-1]:.4f}")

    return {**{k: float(v) for k, v in figures.items()},
            "gd_loss": h1["loss"][-1], "gd_w": float(m1.w[...]), "gd_b": float(m1.b[...]),
            "adam_loss": h2["loss"][-1], "adam_w": float(m2.w[...]), "adam_b": float(m2.b[...]),
            "linear_w": float(lin.kernel[0, 0]), "linear_b": float(lin.bias[0]),
            "linear_train_loss": h3["loss"][-1], "linear_val_loss": h3["val_loss"][-1],
            "mlp_train_loss": h4["loss"][-1], "mlp_val_loss": h4["val_loss"][-1]}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
